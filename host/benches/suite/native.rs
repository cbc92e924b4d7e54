//! The price of the sandbox: the bank aggregate (the `bank-account` crate's `Account`)
//! run as its Wasm component and compiled natively, through the same command bus, the
//! same SQLite write store with the same durability, in one process and one run.
//!
//! The native code goes through the SDK's `Aggregate` trait the way the component's
//! glue does: the state is kept as JSON between commands, events and commands are
//! decoded from their externally tagged JSON. So the difference between the two is
//! what the sandbox costs (instantiation, the calls across the boundary, the copies),
//! not a different algorithm. The load is in process (tokio tasks calling
//! `CommandBus::execute`), with no HTTP, so the figure isolates the bus.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tessera::command_bus::{
    AggregateCode, AggregateSession, CommandBus, CommandRequest, NativeAggregate,
};
use tessera::event_store::{Durability, EventStore, RecordedEvent, SqliteEventStore};
use tessera::plugin::{CallError, Command, Decision, Limits, Plugins, Refusal, Runtime};

/// One way of running the aggregate, measured.
#[derive(Debug)]
pub struct Measured {
    pub mode: &'static str,
    pub commands: u64,
    pub per_second: f64,
    /// Latencies in microseconds.
    pub hist: Histogram<u64>,
    /// This process's CPU time (user + system) per command, in microseconds.
    pub cpu_us_per_command: Option<f64>,
}

/// Both ways, at the same number of concurrent commands on new streams.
#[derive(Debug)]
pub struct Comparison {
    pub wasm: Measured,
    pub native: Measured,
}

impl Comparison {
    /// Wasm time per command over native time per command.
    pub fn ratio(&self) -> f64 {
        self.native.per_second / self.wasm.per_second
    }

    /// Wasm CPU per command over native CPU per command.
    pub fn cpu_ratio(&self) -> Option<f64> {
        Some(self.wasm.cpu_us_per_command? / self.native.cpu_us_per_command?)
    }
}

/// Runs the two ways one after the other, each on a fresh store in `scratch`.
pub async fn compare(
    bank_account_wasm: &Path,
    scratch: &Path,
    durability: Durability,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Comparison> {
    let mut results = Vec::new();
    for mode in ["wasm", "native"] {
        let dir = scratch.join(format!("native-bus-{mode}-{connections}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins"))?;
        std::fs::copy(bank_account_wasm, dir.join("plugins/bank-account.wasm"))
            .context("the bank-account plugin")?;
        let bus = bus(&dir, durability, mode == "native").await?;
        results.push(run(mode, bus, connections, warmup, measure).await?);
    }
    let native = results.pop().expect("two runs");
    let wasm = results.pop().expect("two runs");
    Ok(Comparison { wasm, native })
}

async fn bus(dir: &Path, durability: Durability, native: bool) -> Result<Arc<CommandBus>> {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(&dir.join("events.db"), durability)?);
    let runtime = Runtime::new(Limits::default())?;
    let plugins = Arc::new(Plugins::new(
        runtime,
        dir.join("plugins"),
        Some(dir.join("compiled")),
    ));
    plugins.reload().await?;
    let mut bus = CommandBus::new(store, plugins);
    if native {
        bus = bus.serve_native(NativeAggregate {
            name: "bank-account (native)".to_string(),
            aggregate_type: "account".to_string(),
            digest: "native-bank-account".to_string(),
            commands: vec![
                "open-account".to_string(),
                "deposit".to_string(),
                "withdraw".to_string(),
            ],
            code: Arc::new(Native::<bank_account::Account>(PhantomData)),
        });
    }
    Ok(Arc::new(bus))
}

async fn run(
    mode: &'static str,
    bus: Arc<CommandBus>,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Measured> {
    let start = Instant::now();
    let warm_end = start + warmup;
    let end = warm_end + measure;
    let mut lanes = Vec::new();
    for lane in 0..connections {
        let bus = bus.clone();
        lanes.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("a histogram");
            let mut done = 0u64;
            for seq in 0.. {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let request = CommandRequest {
                    command: "open-account".to_string(),
                    aggregate_id: format!("{mode}-{lane}-{seq}"),
                    payload: RawValue::from_string(r#"{"owner":"ada"}"#.to_string()).expect("JSON"),
                    expected_version: None,
                    idempotency_key: None,
                    correlation_id: None,
                    causation_id: None,
                    principal: None,
                    claims: None,
                    request_id: None,
                };
                bus.execute(request).await?;
                if sent >= warm_end {
                    done += 1;
                    let _ = hist.record(sent.elapsed().as_micros() as u64);
                }
            }
            Ok::<_, anyhow::Error>((done, hist))
        }));
    }
    tokio::time::sleep_until(warm_end.into()).await;
    let cpu_before = cpu_time();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut commands = 0;
    for lane in lanes {
        let (done, lane_hist) = lane.await??;
        commands += done;
        hist.add(lane_hist)?;
    }
    let cpu_after = cpu_time();
    let seconds = measure.as_secs_f64();
    Ok(Measured {
        mode,
        commands,
        per_second: commands as f64 / seconds,
        hist,
        cpu_us_per_command: match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if commands > 0 => {
                Some((after - before).as_secs_f64() * 1e6 / commands as f64)
            }
            _ => None,
        },
    })
}

/// This process's user + system CPU time, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s on every platform Tessera runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// An SDK aggregate as native code behind the bus.
struct Native<A>(PhantomData<fn() -> A>);

impl<A: tessera_sdk::Aggregate + 'static> AggregateCode for Native<A> {
    fn session(&self) -> Result<Box<dyn AggregateSession>, CallError> {
        Ok(Box::new(Native::<A>(PhantomData)))
    }
}

impl<A: tessera_sdk::Aggregate + 'static> AggregateSession for Native<A> {
    fn fold(
        &mut self,
        state: Option<Arc<str>>,
        events: &[RecordedEvent],
    ) -> Result<Option<Arc<str>>, CallError> {
        if events.is_empty() {
            return Ok(state);
        }
        let mut aggregate = load::<A>(state.as_deref())?;
        for event in events {
            let data: Value = serde_json::from_str(event.data.get()).map_err(failed)?;
            let tagged = Value::Object(Map::from_iter([(event.event_type.clone(), data)]));
            aggregate.apply(serde_json::from_value(tagged).map_err(failed)?);
        }
        let json = serde_json::to_string(&aggregate).map_err(failed)?;
        Ok(Some(Arc::from(json)))
    }

    fn handle(&mut self, state: Option<&str>, command: &Command) -> Result<Decision, CallError> {
        let aggregate = load::<A>(state)?;
        let payload: Value = match serde_json::from_str(&command.payload) {
            Ok(payload) => payload,
            Err(e) => return Ok(Err(invalid("payload", e))),
        };
        let tagged = Value::Object(Map::from_iter([(command.name.clone(), payload)]));
        let typed: A::Command = match serde_json::from_value(tagged) {
            Ok(typed) => typed,
            Err(e) => return Ok(Err(invalid("payload", e))),
        };
        let metadata = tessera_sdk::Metadata {
            command_id: command.metadata.command_id.clone(),
            correlation_id: command.metadata.correlation_id.clone(),
            causation_id: command.metadata.causation_id.clone(),
            principal: command.metadata.principal.clone(),
            timestamp: command.metadata.timestamp.clone(),
            claims: command
                .metadata
                .claims
                .as_ref()
                .map(|c| c.get().to_string()),
        };
        let events = match aggregate.handle(typed, &metadata) {
            Ok(events) => events,
            Err(refusal) => return Ok(Err(refused(refusal))),
        };
        let mut decided = Vec::with_capacity(events.len());
        for event in &events {
            let (event_type, data) = match serde_json::to_value(event).map_err(failed)? {
                Value::String(name) => (name, Value::Null),
                Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one"),
                other => return Err(failed(format!("not an externally tagged event: {other}"))),
            };
            decided.push((
                event_type,
                serde_json::value::to_raw_value(&data).map_err(failed)?,
            ));
        }
        Ok(Ok(decided))
    }
}

fn load<A: tessera_sdk::Aggregate>(state: Option<&str>) -> Result<A, CallError> {
    match state {
        None => Ok(A::default()),
        Some(json) => serde_json::from_str(json).map_err(failed),
    }
}

fn failed(error: impl std::fmt::Display) -> CallError {
    CallError::Trapped {
        plugin: "bank-account (native)".to_string(),
        reason: error.to_string(),
    }
}

fn invalid(field: &str, error: impl std::fmt::Display) -> Refusal {
    Refusal::Invalid(vec![(field.to_string(), error.to_string())])
}

fn refused(refusal: tessera_sdk::Refusal) -> Refusal {
    match refusal {
        tessera_sdk::Refusal::Invalid(fields) => Refusal::Invalid(
            fields
                .into_iter()
                .map(|field| (field.field, field.message))
                .collect(),
        ),
        tessera_sdk::Refusal::Rejected { code, message } => Refusal::Rejected { code, message },
        tessera_sdk::Refusal::NotFound(message) => Refusal::NotFound(message),
    }
}
