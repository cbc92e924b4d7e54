//! Prometheus metrics: the names, the recorder, and one small function per place that
//! records (`GET /metrics` renders them; see `docs/metrics.md` for the reference).
//!
//! The `metrics` facade has one recorder per process, while a process may run several
//! hosts (the tests do). So [`install`] builds a [`PrometheusRecorder`] once, installs
//! it globally (a [`OnceLock`]), and hands every host that wants metrics a clone of the
//! same [`PrometheusHandle`]; a thread started with it runs the recorder's upkeep.
//! Guarantees and consequences:
//! - In-process hosts share every series: a test may only assert that values are
//!   present, non-zero or growing, never exact counts.
//! - Nothing is recorded until some host installed the recorder: every function here
//!   first checks one relaxed atomic ([`enabled`]), so a host started with
//!   `Config::metrics = false` (`--no-metrics`) builds no labels and reads no clock.
//!   Once any host in the process installed it, every host records.
//! - Label values are bounded: plugin, command, query and projection names come from
//!   what is deployed (a name the client made up is recorded as [`UNKNOWN`]), never an
//!   aggregate id, a stream or a request id.
//! - The hot path builds no labels per call: the handles of each name's series are
//!   registered once and kept in small maps read under a shared lock.
//! - Gauges that are cheap to compute (head, store size, projection lag, parked
//!   events, rebuild progress) are set when `/metrics` is scraped ([`scraped`]), not on
//!   the hot path; a gauge no scrape set for [`GAUGE_IDLE`] disappears (a retired
//!   projection version's, say).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::command_bus::{CommandError, CommandOutcome};
use crate::plugin::{CallError, Refusal};
use crate::projection::ProjectionStatus;
use crate::query::{Answer, QueryError};

/// Commands by name and outcome.
pub const COMMANDS: &str = "tessera_commands_total";
/// Time in the command bus: routing, fold, decision, append and fsync.
pub const COMMAND_DURATION: &str = "tessera_command_duration_seconds";
pub const QUERIES: &str = "tessera_queries_total";
pub const QUERY_DURATION: &str = "tessera_query_duration_seconds";
pub const PROJECTION_LAG_EVENTS: &str = "tessera_projection_lag_events";
pub const PROJECTION_LAG_SECONDS: &str = "tessera_projection_lag_seconds";
pub const PROJECTION_APPLIED: &str = "tessera_projection_events_applied_total";
pub const PROJECTION_FAILURES: &str = "tessera_projection_failures_total";
pub const PROJECTION_PARKED: &str = "tessera_projection_parked_events";
pub const PROJECTION_PROGRESS: &str = "tessera_projection_rebuild_progress_ratio";
pub const PLUGIN_LOADS: &str = "tessera_plugin_loads_total";
pub const PLUGIN_RELOADS: &str = "tessera_plugin_reloads_total";
pub const PLUGIN_CALL_FAILURES: &str = "tessera_plugin_call_failures_total";
pub const PLUGIN_CALL_DURATION: &str = "tessera_plugin_call_duration_seconds";
pub const GROUP_COMMIT_APPENDS: &str = "tessera_group_commit_appends";
pub const FSYNC_DURATION: &str = "tessera_fsync_duration_seconds";
pub const HEAD_POSITION: &str = "tessera_head_position";
pub const WRITE_STORE_BYTES: &str = "tessera_write_store_bytes";

/// The label value of a command or query name that nothing deployed answers to: the
/// client chose it, so it must not become a series of its own.
pub const UNKNOWN: &str = "(unknown)";

/// Buckets of every `_seconds` histogram: from 100 µs to 10 s, dense around the
/// milliseconds a command, a query or an fsync takes.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of the group commit size, up to the writer's largest group (512).
const APPENDS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How long a gauge stays without being set before it is dropped from the output.
pub const GAUGE_IDLE: Duration = Duration::from_secs(120);
/// How often the recorder's upkeep runs (it folds histogram samples recorded since).
const UPKEEP: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder if no host did yet and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(GROUP_COMMIT_APPENDS.into()),
                        APPENDS_BUCKETS,
                    )
                })
                .expect("the buckets are not empty")
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    ENABLED.store(true, Ordering::Release);
                }
                // Someone else's recorder (an embedding program's): record into it,
                // and `/metrics` shows only what this handle holds.
                Err(error) => tracing::warn!(%error, "another metrics recorder is installed"),
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                // Rendering folds the samples too; only memory between scrapes grows.
                tracing::warn!(%error, "cannot start the metrics upkeep thread");
            }
            handle
        })
        .clone()
}

/// Whether anything records (some host in this process installed the recorder).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The HELP text of every family.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        COMMANDS,
        "Commands that reached the command bus, by command and outcome (ok, replayed, invalid, rejected, not_found, conflict, unknown, plugin_error, store_error)."
    );
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time a command spent in the command bus: routing, fold, decision, append and fsync."
    );
    describe_counter!(
        QUERIES,
        "Queries by query, outcome (ok, error) and cache (hit, miss)."
    );
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time a query took: waiting for freshness, the cache and the handler call."
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        "Log positions between a projection version's checkpoint and the head."
    );
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "How long a projection version has been behind the head (0 when live)."
    );
    describe_counter!(
        PROJECTION_APPLIED,
        "Events a projection version applied and committed."
    );
    describe_counter!(
        PROJECTION_FAILURES,
        "Projection batches that failed (each retry counts)."
    );
    describe_gauge!(
        PROJECTION_PARKED,
        "Events parked by a projection version's skip policy and not yet retried or dropped."
    );
    describe_gauge!(
        PROJECTION_PROGRESS,
        "How far a projection version has come towards the head, 0 to 1 (1 when live)."
    );
    describe_counter!(
        PLUGIN_LOADS,
        "Plugin files loaded from the plugins folder, by plugin (the file's stem when loading failed) and outcome (ok, failed)."
    );
    describe_counter!(
        PLUGIN_RELOADS,
        "New code loaded for a plugin that was already served (hot reload, deploy, rollback)."
    );
    describe_counter!(
        PLUGIN_CALL_FAILURES,
        "Plugin calls that failed, by plugin and kind (trap, deadline, bad_output, stopped)."
    );
    describe_histogram!(
        PLUGIN_CALL_DURATION,
        Unit::Seconds,
        "Time of one plugin call, by plugin and call (describe, fold, handle, apply, query, instantiate)."
    );
    describe_histogram!(
        GROUP_COMMIT_APPENDS,
        Unit::Count,
        "Appends committed together in one write-store transaction (one fsync)."
    );
    describe_histogram!(
        FSYNC_DURATION,
        Unit::Seconds,
        "Time of one group's COMMIT in the write store, the fsync included."
    );
    describe_gauge!(
        HEAD_POSITION,
        "The write store's head: the last log position."
    );
    describe_gauge!(
        WRITE_STORE_BYTES,
        Unit::Bytes,
        "The write store's size on disk (database and write-ahead log)."
    );
}

/// Handles registered once per label value and kept, so that recording is an atomic
/// update after a lookup under a shared lock.
struct Handles<K, V> {
    map: OnceLock<RwLock<HashMap<K, Arc<V>>>>,
}

impl<K: Eq + Hash, V> Handles<K, V> {
    const fn new() -> Self {
        Handles {
            map: OnceLock::new(),
        }
    }

    fn get<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let map = self.map.get_or_init(RwLock::default);
        if let Some(handles) = map.read().expect("metrics lock").get(key) {
            return handles.clone();
        }
        let (key, value) = make();
        map.write()
            .expect("metrics lock")
            .entry(key)
            .or_insert_with(|| Arc::new(value))
            .clone()
    }
}

/// A family's series by one outcome label, each registered on first use (so that
/// outcomes that never happened print no zero series).
struct ByOutcome<const N: usize>([OnceLock<Counter>; N]);

impl<const N: usize> ByOutcome<N> {
    fn new() -> Self {
        ByOutcome(std::array::from_fn(|_| OnceLock::new()))
    }

    fn get(&self, index: usize, register: impl FnOnce() -> Counter) -> &Counter {
        self.0[index].get_or_init(register)
    }
}

/// When something measured started; nothing when metrics are off.
#[derive(Debug, Clone, Copy)]
pub struct Started(Option<Instant>);

impl Started {
    #[inline]
    pub fn now() -> Self {
        Started(enabled().then(Instant::now))
    }
}

// ---------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------

const COMMAND_OUTCOMES: [&str; 9] = [
    "ok",
    "replayed",
    "invalid",
    "rejected",
    "not_found",
    "conflict",
    "unknown",
    "plugin_error",
    "store_error",
];

/// One command's or query's series: its counters by outcome and its latency.
struct Series<const N: usize> {
    name: Arc<str>,
    outcomes: ByOutcome<N>,
    duration: Histogram,
}

impl<const N: usize> Series<N> {
    /// The series of `name`, its histogram `duration` labelled `label = name`.
    fn of(
        handles: &Handles<String, Self>,
        name: &str,
        duration: &'static str,
        label: &'static str,
    ) -> Arc<Self> {
        handles.get(name, || {
            let name_label: Arc<str> = Arc::from(name);
            let duration = metrics::histogram!(duration, label => name_label.clone());
            (
                name.to_string(),
                Series {
                    name: name_label,
                    outcomes: ByOutcome::new(),
                    duration,
                },
            )
        })
    }
}

static COMMAND_SERIES: Handles<String, Series<9>> = Handles::new();

/// The outcome label of a command's result (an index into [`COMMAND_OUTCOMES`]).
fn command_outcome(result: &Result<CommandOutcome, CommandError>) -> usize {
    match result {
        Ok(outcome) if outcome.replayed => 1,
        Ok(_) => 0,
        Err(CommandError::Refused(Refusal::Invalid(_)) | CommandError::BadAggregateId(_)) => 2,
        Err(
            CommandError::Refused(Refusal::Rejected { .. }) | CommandError::IdempotencyMismatch(_),
        ) => 3,
        Err(CommandError::Refused(Refusal::NotFound(_))) => 4,
        Err(CommandError::Conflict { .. } | CommandError::Contended { .. }) => 5,
        Err(CommandError::UnknownCommand(_)) => 6,
        Err(CommandError::Plugin(_)) => 7,
        Err(CommandError::Store(_)) => 8,
    }
}

/// Records a command's outcome and time. `name` is the command's name (taken only
/// when metrics are on); `deployed` tells whether it names a deployed command, asked
/// only when the bus refused the command before routing it.
pub fn command(
    started: Started,
    name: Option<&str>,
    result: &Result<CommandOutcome, CommandError>,
    deployed: impl FnOnce(&str) -> bool,
) {
    let (Some(at), Some(name)) = (started.0, name) else {
        return;
    };
    let outcome = command_outcome(result);
    let name = match result {
        Err(CommandError::UnknownCommand(_)) => UNKNOWN,
        Err(CommandError::BadAggregateId(_)) if !deployed(name) => UNKNOWN,
        _ => name,
    };
    let series = Series::of(&COMMAND_SERIES, name, COMMAND_DURATION, "command");
    series
        .outcomes
        .get(outcome, || {
            metrics::counter!(COMMANDS, "command" => series.name.clone(), "outcome" => COMMAND_OUTCOMES[outcome])
        })
        .increment(1);
    series.duration.record(at.elapsed());
}

// ---------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------

/// `(outcome, cache)` pairs, in index order.
const QUERY_OUTCOMES: [(&str, &str); 3] = [("ok", "hit"), ("ok", "miss"), ("error", "miss")];

static QUERY_SERIES: Handles<String, Series<3>> = Handles::new();

/// Records a query's outcome, cache use and time. An error is a miss: no cached
/// answer was served.
pub fn query(started: Started, name: &str, result: &Result<Answer, QueryError>) {
    let Some(at) = started.0 else {
        return;
    };
    let outcome = match result {
        Ok(answer) if answer.cached => 0,
        Ok(_) => 1,
        Err(_) => 2,
    };
    let name = match result {
        Err(QueryError::UnknownQuery(_)) => UNKNOWN,
        _ => name,
    };
    let series = Series::of(&QUERY_SERIES, name, QUERY_DURATION, "query");
    series
        .outcomes
        .get(outcome, || {
            let (outcome, cache) = QUERY_OUTCOMES[outcome];
            metrics::counter!(QUERIES, "query" => series.name.clone(), "outcome" => outcome, "cache" => cache)
        })
        .increment(1);
    series.duration.record(at.elapsed());
}

// ---------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------

/// The guest calls timed, as the `call` label says them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Call {
    Describe,
    Fold,
    Handle,
    Apply,
    Query,
    /// Creating an instance (the guest's start code runs): what a call on a fresh
    /// instance costs beyond a warm one.
    Instantiate,
}

impl Call {
    /// How many kinds of call there are.
    const COUNT: usize = 6;

    fn label(self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Fold => "fold",
            Call::Handle => "handle",
            Call::Apply => "apply",
            Call::Query => "query",
            Call::Instantiate => "instantiate",
        }
    }
}

const FAILURE_KINDS: [&str; 4] = ["trap", "deadline", "bad_output", "stopped"];

struct PluginSeries {
    name: Arc<str>,
    calls: [OnceLock<Histogram>; Call::COUNT],
    failures: ByOutcome<4>,
}

static PLUGIN_SERIES: Handles<Arc<str>, PluginSeries> = Handles::new();

fn plugin_series(plugin: &Arc<str>) -> Arc<PluginSeries> {
    PLUGIN_SERIES.get(&**plugin, || {
        (
            plugin.clone(),
            PluginSeries {
                name: plugin.clone(),
                calls: std::array::from_fn(|_| OnceLock::new()),
                failures: ByOutcome::new(),
            },
        )
    })
}

/// Times one guest call from its creation until it is dropped.
#[derive(Debug)]
#[must_use = "the call is timed until the timer is dropped"]
pub struct CallTimer(Option<(Arc<str>, Call, Instant)>);

impl CallTimer {
    #[inline]
    pub fn start(plugin: &Arc<str>, call: Call) -> Self {
        CallTimer(enabled().then(|| (plugin.clone(), call, Instant::now())))
    }
}

impl CallTimer {
    /// Records the call under `plugin` instead: `describe` learns the plugin's name.
    pub fn rename(&mut self, plugin: &Arc<str>) {
        if let Some((name, _, _)) = &mut self.0 {
            *name = plugin.clone();
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let Some((plugin, call, at)) = self.0.take() else {
            return;
        };
        let series = plugin_series(&plugin);
        series.calls[call as usize]
            .get_or_init(|| {
                metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => series.name.clone(), "call" => call.label())
            })
            .record(at.elapsed());
    }
}

/// Counts a failed call of `plugin`.
pub fn call_failed(plugin: &Arc<str>, error: &CallError) {
    if !enabled() {
        return;
    }
    let kind = match error {
        CallError::Trapped { .. } => 0,
        CallError::DeadlineExceeded { .. } => 1,
        CallError::BadOutput { .. } => 2,
        CallError::Stopped { .. } => 3,
    };
    let series = plugin_series(plugin);
    series
        .failures
        .get(kind, || {
            metrics::counter!(PLUGIN_CALL_FAILURES, "plugin" => series.name.clone(), "kind" => FAILURE_KINDS[kind])
        })
        .increment(1);
}

/// Counts a plugin file's load: `plugin` is the name it describes itself by, or the
/// file's stem when it failed to load; `reload` when the file served code before.
pub fn plugin_loaded(plugin: &str, ok: bool, reload: bool) {
    if !enabled() {
        return;
    }
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(PLUGIN_LOADS, "plugin" => plugin.to_string(), "outcome" => outcome)
        .increment(1);
    if ok && reload {
        metrics::counter!(PLUGIN_RELOADS, "plugin" => plugin.to_string()).increment(1);
    }
}

// ---------------------------------------------------------------------------------
// Projections
// ---------------------------------------------------------------------------------

/// The `version` label of a projection version (`v<schema>.g<generation>`, as the
/// logs name it).
fn version_label(version: u32, generation: u32) -> String {
    format!("v{version}.g{generation}")
}

/// Counts events a projection version applied (once per batch).
pub fn projection_applied(projection: &str, version: u32, generation: u32, events: u64) {
    if !enabled() || events == 0 {
        return;
    }
    metrics::counter!(PROJECTION_APPLIED, "projection" => projection.to_string(), "version" => version_label(version, generation))
        .increment(events);
}

/// Counts a failed projection batch.
pub fn projection_failed(projection: &str, version: u32, generation: u32) {
    if !enabled() {
        return;
    }
    metrics::counter!(PROJECTION_FAILURES, "projection" => projection.to_string(), "version" => version_label(version, generation))
        .increment(1);
}

// ---------------------------------------------------------------------------------
// The write store
// ---------------------------------------------------------------------------------

static WRITER: OnceLock<(Histogram, Histogram)> = OnceLock::new();

/// Records one group commit of the write store: how many appends it took and how long
/// its COMMIT (with the fsync) took since `commit`.
pub fn group_committed(appends: usize, commit: Started) {
    let Some(at) = commit.0 else {
        return;
    };
    let (size, fsync) = WRITER.get_or_init(|| {
        (
            metrics::histogram!(GROUP_COMMIT_APPENDS),
            metrics::histogram!(FSYNC_DURATION),
        )
    });
    size.record(appends as f64);
    fsync.record(at.elapsed());
}

// ---------------------------------------------------------------------------------
// At scrape time
// ---------------------------------------------------------------------------------

/// Sets the gauges computed when `/metrics` is scraped: the head, the write store's
/// size and each projection version's lag, parked events and progress.
pub fn scraped(head: u64, store_bytes: Option<u64>, projections: &[ProjectionStatus]) {
    if !enabled() {
        return;
    }
    metrics::gauge!(HEAD_POSITION).set(head as f64);
    if let Some(bytes) = store_bytes {
        metrics::gauge!(WRITE_STORE_BYTES).set(bytes as f64);
    }
    for status in projections {
        let labels = [
            ("projection", status.name.clone()),
            ("version", version_label(status.version, status.generation)),
        ];
        metrics::gauge!(PROJECTION_LAG_EVENTS, &labels).set(status.lag_events as f64);
        metrics::gauge!(PROJECTION_LAG_SECONDS, &labels).set(status.lag_ms as f64 / 1000.0);
        metrics::gauge!(PROJECTION_PARKED, &labels).set(status.parked as f64);
        let progress = if status.lag_events == 0 || status.head == 0 {
            1.0
        } else {
            status.checkpoint as f64 / status.head as f64
        };
        metrics::gauge!(PROJECTION_PROGRESS, &labels).set(progress);
    }
}
