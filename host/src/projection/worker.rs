//! One projection version's worker: a task that reads the log after its checkpoint,
//! applies batches through the plugin, and commits each batch with its checkpoint.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::status::{ProjectionStatus, State, Status};
use crate::event_store::EventStore;
use crate::plugin::ProjectionRoute;
use crate::read_store::{ProjectionDb, ReadPool};

/// Events read from the log per batch.
const BATCH: usize = 512;
/// The first pause after a failed batch; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running projection version.
#[derive(Debug)]
pub(super) struct Worker {
    pub route: Arc<ProjectionRoute>,
    pub pool: Arc<ReadPool>,
    checkpoint: watch::Receiver<u64>,
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Worker {
    pub fn start(route: Arc<ProjectionRoute>, path: PathBuf, store: Arc<dyn EventStore>) -> Self {
        let (checkpoint_tx, checkpoint) = watch::channel(0);
        let status = Arc::new(Mutex::new(Status::default()));
        let cancel = CancellationToken::new();
        let run = Run {
            route: route.clone(),
            path: path.clone(),
            store,
            checkpoint: checkpoint_tx,
            status: status.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(run.run());
        Worker {
            route,
            pool: Arc::new(ReadPool::new(&path)),
            checkpoint,
            status,
            cancel,
            task,
        }
    }

    /// True once the database exists with its tables: queries can read it.
    pub fn ready(&self) -> bool {
        self.status.lock().expect("status lock").ready
    }

    pub fn checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint.clone()
    }

    /// Asks the worker to stop after its current batch.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }

    pub fn status(&self, head: u64) -> ProjectionStatus {
        let checkpoint = *self.checkpoint.borrow();
        let status = self.status.lock().expect("status lock");
        ProjectionStatus {
            name: self.route.plugin.clone(),
            version: self.route.schema_version,
            mode: self.route.mode,
            status: status.state,
            checkpoint,
            head: head.max(checkpoint),
            lag_events: head.saturating_sub(checkpoint),
            lag_ms: status
                .behind_since
                .map_or(0, |since| since.elapsed().as_millis() as u64),
            events_applied: status.events_applied,
            error: status.error.clone(),
            failed_at: status.failed_at,
            digest: self.route.digest.clone(),
        }
    }
}

/// The worker task's own state.
struct Run {
    route: Arc<ProjectionRoute>,
    path: PathBuf,
    store: Arc<dyn EventStore>,
    checkpoint: watch::Sender<u64>,
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
}

impl Run {
    async fn run(self) {
        let name = self.route.plugin.clone();
        let mut backoff = FIRST_BACKOFF;
        // Opening can fail (disk full, corrupt file): report, wait, try again.
        let (mut db, mut at, mut setup_done) = loop {
            let path = self.path.clone();
            let opened = tokio::task::spawn_blocking(move || {
                let db = ProjectionDb::open(&path)?;
                let (position, setup) = db.state()?;
                Ok::<_, crate::read_store::ReadStoreError>((db, position, setup))
            })
            .await;
            match opened {
                Ok(Ok(opened)) => break opened,
                Ok(Err(error)) => self.failed(format!("cannot open its database: {error}"), None),
                Err(error) => self.failed(format!("cannot open its database: {error}"), None),
            }
            if !self.pause(&mut backoff).await {
                return self.stopped();
            }
        };
        self.checkpoint.send_replace(at);
        self.update(|s| s.ready = setup_done);
        tracing::info!(projection = %name, version = self.route.schema_version, checkpoint = at, "projection started");

        let mut head = self.store.head();
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let target = *head.borrow_and_update();
            if at >= target && setup_done {
                self.update(|s| {
                    s.state = State::Live;
                    s.behind_since = None;
                });
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { break },
                    () = self.cancel.cancelled() => break,
                }
                continue;
            }
            self.update(|s| {
                if s.state != State::Failed {
                    s.state = if setup_done {
                        State::CatchingUp
                    } else {
                        State::Starting
                    };
                }
                s.behind_since.get_or_insert_with(Instant::now);
            });
            let events = match self.store.read_all(at, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    self.failed(format!("cannot read the log: {error}"), None);
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            let covered = events.last().map_or(at, |e| e.position);
            let relevant: Vec<_> = events
                .into_iter()
                .filter(|e| self.route.handles.contains(&e.event_type))
                .collect();
            let applied = relevant.len() as u64;
            let handler = self.route.handler.clone();
            let run_setup = !setup_done;
            let outcome = tokio::task::spawn_blocking(move || {
                handler.apply_batch(db, run_setup, &relevant, covered)
            })
            .await;
            let (returned, result) = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    // The blocking task itself died (a host bug); the database went
                    // with it, so this worker cannot go on. Queries keep the last
                    // committed state.
                    self.failed(format!("worker task failed: {error}"), None);
                    return self.stopped();
                }
            };
            db = returned;
            match result {
                Ok(()) => {
                    at = covered;
                    setup_done = true;
                    backoff = FIRST_BACKOFF;
                    self.checkpoint.send_replace(at);
                    self.update(|s| {
                        s.events_applied += applied;
                        s.ready = true;
                        s.error = None;
                        s.failed_at = None;
                        if s.state == State::Failed {
                            s.state = State::CatchingUp;
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(projection = %name, %error, "projection batch failed");
                    self.failed(error.to_string(), error.position());
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                }
            }
        }
        self.stopped();
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().expect("status lock"));
    }

    fn failed(&self, error: String, position: Option<u64>) {
        self.update(|s| {
            s.state = State::Failed;
            s.error = Some(error);
            s.failed_at = position;
        });
    }

    fn stopped(&self) {
        self.update(|s| s.state = State::Stopped);
    }

    /// Waits out the backoff (doubling it); false if the worker was stopped meanwhile.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.cancel.cancelled() => false,
        }
    }
}
