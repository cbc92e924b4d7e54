//! Where the bus runs a decision, seen from the code deciding: on the async worker that
//! took the command once the code is warm and fast, on a blocking thread when it needs a
//! new instance, and a decision on a new instance, however slow, never sends the code
//! away (`pace.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::{AggregateCode, AggregateSession, CommandBus, CommandRequest, NativeAggregate};
use crate::event_store::{Durability, EventStore, RecordedEvent, SqliteEventStore};
use crate::plugin::{CallError, Command, Decision, Limits, Plugins, Runtime};

/// Code whose sessions report the thread they decided on, and that say they need a new
/// instance (and burn `fresh_cpu` of CPU on it) while `cold` is set. With `idle_taken`
/// set, the code says it is warm all the same: its idle instance was there when the bus
/// looked and taken by another command before this session got it.
struct Probe {
    cold: AtomicBool,
    idle_taken: AtomicBool,
    fresh_cpu: Duration,
    threads: Mutex<Vec<ThreadId>>,
}

struct ProbeSession {
    probe: Arc<Probe>,
    fresh: bool,
}

impl AggregateCode for Arc<Probe> {
    fn session(&self) -> Result<Box<dyn AggregateSession>, CallError> {
        Ok(Box::new(ProbeSession {
            probe: self.clone(),
            fresh: self.cold.load(Ordering::SeqCst),
        }))
    }

    fn warm(&self) -> bool {
        self.idle_taken.load(Ordering::SeqCst) || !self.cold.load(Ordering::SeqCst)
    }
}

impl AggregateSession for ProbeSession {
    fn fold(
        &mut self,
        state: Option<Arc<str>>,
        _events: &[RecordedEvent],
    ) -> Result<Option<Arc<str>>, CallError> {
        Ok(state)
    }

    fn handle(&mut self, _state: Option<&str>, _command: &Command) -> Result<Decision, CallError> {
        self.probe
            .threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        if self.fresh {
            let started = super::pace::thread_cpu();
            while super::pace::thread_cpu() - started < self.probe.fresh_cpu {
                std::hint::black_box(Instant::now());
            }
        }
        let data = RawValue::from_string("{}".to_string()).unwrap();
        Ok(Ok(vec![("Probed".to_string(), data)]))
    }

    fn fresh(&self) -> bool {
        self.fresh
    }
}

async fn bus(dir: &std::path::Path, probe: Arc<Probe>) -> CommandBus {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(&dir.join("events.db"), Durability::Normal).unwrap());
    let plugins = Arc::new(Plugins::new(
        Runtime::new(Limits::default()).unwrap(),
        dir.join("plugins"),
        None,
    ));
    CommandBus::new(store, plugins).serve_native(NativeAggregate {
        name: "probe".to_string(),
        aggregate_type: "probe".to_string(),
        digest: "probe-v1".to_string(),
        commands: vec!["probe".to_string()],
        code: Arc::new(probe),
    })
}

fn command(id: usize) -> CommandRequest {
    CommandRequest {
        command: "probe".to_string(),
        aggregate_id: format!("p{id}"),
        payload: RawValue::from_string("{}".to_string()).unwrap(),
        expected_version: None,
        idempotency_key: None,
        correlation_id: None,
        causation_id: None,
        principal: None,
        claims: None,
        request_id: None,
    }
}

/// A probe whose new instances cost more CPU than every bound of the pace: counted, one
/// of them starts a cool-down.
fn probe() -> Arc<Probe> {
    Arc::new(Probe {
        cold: AtomicBool::new(false),
        idle_taken: AtomicBool::new(false),
        fresh_cpu: super::pace::HARD * 2,
        threads: Mutex::default(),
    })
}

/// Runs `count` commands from this (the runtime's only) thread; returns how many of
/// them were decided on it.
async fn decided_here(bus: &CommandBus, probe: &Probe, from: usize, count: usize) -> usize {
    probe.threads.lock().unwrap().clear();
    for id in from..from + count {
        bus.execute(command(id)).await.expect("the probe accepts");
    }
    let here = std::thread::current().id();
    let threads = probe.threads.lock().unwrap();
    threads.iter().filter(|&&thread| thread == here).count()
}

/// Given: a bus whose probe code is warm, its decisions running inline (after its
/// warm-up on the pool, the next 10 are all decided on this thread).
async fn warm_bus(dir: &std::path::Path) -> (CommandBus, Arc<Probe>) {
    let probe = probe();
    let bus = bus(dir, probe.clone()).await;
    decided_here(&bus, &probe, 0, 10).await;
    assert_eq!(decided_here(&bus, &probe, 100, 10).await, 10);
    (bus, probe)
}

#[tokio::test(flavor = "current_thread")]
async fn decisions_on_new_instances_go_to_the_blocking_pool_and_do_not_count_as_slow() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, probe) = warm_bus(dir.path()).await;
    // New instances (slow ones) are made and called on the blocking pool...
    probe.cold.store(true, Ordering::SeqCst);
    assert_eq!(decided_here(&bus, &probe, 200, 5).await, 0);
    // ...and their time does not send the code away once it is warm again.
    probe.cold.store(false, Ordering::SeqCst);
    assert_eq!(decided_here(&bus, &probe, 300, 10).await, 10);
}

#[tokio::test(flavor = "current_thread")]
async fn a_new_instance_made_inline_counts_and_sends_slow_code_to_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, probe) = warm_bus(dir.path()).await;
    // The bus saw an idle instance, so the decision runs inline; it finds none and
    // makes one here, slowly: that time counts...
    probe.idle_taken.store(true, Ordering::SeqCst);
    probe.cold.store(true, Ordering::SeqCst);
    assert_eq!(decided_here(&bus, &probe, 200, 1).await, 1);
    // ...so the cool-down sends the next decisions to the blocking pool, fast as they are.
    probe.idle_taken.store(false, Ordering::SeqCst);
    probe.cold.store(false, Ordering::SeqCst);
    assert_eq!(decided_here(&bus, &probe, 300, 5).await, 0);
}
