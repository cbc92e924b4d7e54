//! One projection version's worker: a task that reads the log after its checkpoint,
//! applies batches through the plugin, and commits each batch with its checkpoint.
//!
//! A failing event is narrowed down (the events before it are applied in their own
//! batch), retried with exponential backoff, and after the last attempt handled by the
//! projection's policy: halt there (`stop`), or park it and move on (`skip`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lifecycle::{OnFailure, Policy, VersionKey};
use super::status::{State, Status};
use crate::event_store::{EventStore, RecordedEvent, StoreError};
use crate::plugin::{Batch, BatchError, ProjectionHandler};
use crate::read_store::{Parked, ProjectionDb, ReadPool, ReadStoreError};

/// Events read from the log per batch.
const BATCH: usize = 512;
/// Events read from the log per batch while catching up: larger batches spread a
/// batch's fixed costs (an instance, a transaction, two thread hops) thinner.
const CATCH_UP_BATCH: usize = 2048;
/// The first pause after a failed batch; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker further behind than this counts as catching up: its batches take turns
/// with other catching-up workers, so that live projections are never starved.
const CATCHING_UP: u64 = BATCH as u64;

/// What an operator can ask of a running worker.
#[derive(Debug)]
pub(super) enum Request {
    /// Go on after halting at a failed event (policy `stop`).
    Resume,
    /// Apply a parked event again; it leaves the parked list if it succeeds.
    RetryParked {
        position: u64,
        reply: oneshot::Sender<Result<(), ParkedError>>,
    },
    /// Forget a parked event.
    DropParked {
        position: u64,
        reply: oneshot::Sender<Result<bool, ParkedError>>,
    },
}

/// Why an operator's request about a parked event did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ParkedError {
    /// The worker's database is in use by a batch that is being handed over; ask
    /// again in a moment.
    #[error("the projection's database is busy; try again")]
    Busy,
    /// No event is parked at that position: check the parked list.
    #[error("no parked event at position {0}")]
    NotParked(u64),
    /// The parked event failed again: the projection's code still refuses it. It
    /// stays parked; deploy a fix first.
    #[error("it failed again: {0}")]
    Failed(#[source] BatchError),
    /// The log no longer holds the parked event: the write store is not the one the
    /// projection was built from. An operator's matter.
    #[error("event {0} is not in the log")]
    MissingEvent(u64),
    /// The projection's database failed.
    #[error(transparent)]
    ReadStore(#[from] ReadStoreError),
    /// The write store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a worker needs to run.
pub(super) struct Spec {
    pub name: String,
    pub key: VersionKey,
    pub digest: String,
    pub handles: Arc<std::collections::HashSet<String>>,
    pub handler: Arc<ProjectionHandler>,
    pub path: PathBuf,
    pub store: Arc<dyn EventStore>,
    pub policy: watch::Receiver<Policy>,
    /// Taken by catching-up batches.
    pub catch_up: Arc<Semaphore>,
    /// Check the database's structure before use (after an unclean stop).
    pub check: bool,
}

/// A running projection version.
#[derive(Debug)]
pub(super) struct Worker {
    pub digest: String,
    /// How long one call of this version's code may run.
    pub deadline: Duration,
    pub pool: Arc<ReadPool>,
    checkpoint: watch::Receiver<u64>,
    pub status: Arc<Mutex<Status>>,
    requests: mpsc::Sender<Request>,
    revision: Arc<std::sync::atomic::AtomicU64>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Worker {
    pub fn start(spec: Spec) -> Self {
        let (checkpoint_tx, checkpoint) = watch::channel(0);
        let (requests, requests_rx) = mpsc::channel(16);
        let status = Arc::new(Mutex::new(Status::default()));
        let cancel = CancellationToken::new();
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(0));
        Worker {
            digest: spec.digest.clone(),
            deadline: spec.handler.deadline(),
            pool: Arc::new(ReadPool::new(&spec.path)),
            checkpoint,
            status: status.clone(),
            requests,
            revision: revision.clone(),
            cancel: cancel.clone(),
            task: tokio::spawn(
                Run {
                    spec,
                    checkpoint: checkpoint_tx,
                    status,
                    cancel,
                    requests: requests_rx,
                    revision,
                }
                .run(),
            ),
        }
    }

    /// True once the database exists with its tables: queries can read it.
    pub fn ready(&self) -> bool {
        self.status.lock().expect("status lock").ready
    }

    /// True while the worker is failing (retrying, or halted at a failed event): it
    /// will not reach a new position soon, so nobody should wait for it.
    pub fn failing(&self) -> bool {
        let status = self.status.lock().expect("status lock");
        status.halted || status.state == State::Failed
    }

    pub fn checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint.clone()
    }

    /// Bumped when the read model changed without the checkpoint moving.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Where to send operator requests for this worker.
    pub fn requester(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// Asks the worker to stop after its current batch.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// The worker task's own state.
struct Run {
    spec: Spec,
    checkpoint: watch::Sender<u64>,
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
    requests: mpsc::Receiver<Request>,
    revision: Arc<std::sync::atomic::AtomicU64>,
}

/// Where a worker stands in the log.
struct Position {
    db: Option<ProjectionDb>,
    at: u64,
    setup_done: bool,
    /// The event that failed last, and how many attempts it has had.
    failing: Option<(u64, u32)>,
    /// Halted at a failed event (policy `stop`) until resumed.
    halted: bool,
    backoff: Duration,
    /// The next batch's events, being read while this batch is applied.
    ahead: Option<ReadAhead>,
}

/// A read of the log running beside the batch being applied: while a worker catches
/// up, reading the next batch and applying this one use both cores.
struct ReadAhead {
    /// The position the read starts after; used only if the batch ends there.
    after: u64,
    events: JoinHandle<Result<Vec<RecordedEvent>, StoreError>>,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl Run {
    async fn run(mut self) {
        let Some(mut position) = self.open().await else {
            return self.stopped();
        };
        tracing::info!(
            projection = %self.spec.name,
            version = %self.spec.key,
            checkpoint = position.at,
            "projection started"
        );
        let mut head = self.spec.store.head();
        loop {
            let target = *head.borrow_and_update();
            let idle = position.halted || (position.at >= target && position.setup_done);
            if idle {
                if !position.halted {
                    self.update(|s| {
                        s.state = State::Live;
                        s.behind_since = None;
                        s.progress(position.at, target);
                    });
                }
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { break },
                    Some(request) = self.requests.recv() => self.serve(request, &mut position).await,
                    () = self.cancel.cancelled() => break,
                }
                continue;
            }
            if self.cancel.is_cancelled() {
                break;
            }
            while let Ok(request) = self.requests.try_recv() {
                self.serve(request, &mut position).await;
            }
            self.update(|s| {
                if s.state != State::Failed {
                    s.state = if position.setup_done {
                        State::CatchingUp
                    } else {
                        State::Starting
                    };
                }
                s.behind_since.get_or_insert_with(Instant::now);
            });
            if !self.step(&mut position, target).await {
                break;
            }
        }
        self.stopped();
    }

    /// Opens the database, retrying with backoff; none if stopped meanwhile.
    async fn open(&self) -> Option<Position> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let path = self.spec.path.clone();
            let check = self.spec.check;
            let bounds = self.spec.handler.sql_bounds();
            let opened = tokio::task::spawn_blocking(move || {
                let db = ProjectionDb::open(&path, check, bounds)?;
                let (at, setup) = db.state()?;
                let parked = db.parked()?.len() as u64;
                Ok::<_, ReadStoreError>((db, at, setup, parked))
            })
            .await;
            match opened {
                Ok(Ok((db, at, setup_done, parked))) => {
                    self.checkpoint.send_replace(at);
                    self.update(|s| {
                        s.ready = setup_done;
                        s.parked = parked;
                    });
                    return Some(Position {
                        db: Some(db),
                        at,
                        setup_done,
                        failing: None,
                        halted: false,
                        backoff: FIRST_BACKOFF,
                        ahead: None,
                    });
                }
                Ok(Err(error)) => self.failed(format!("cannot open its database: {error}"), None),
                Err(error) => self.failed(format!("cannot open its database: {error}"), None),
            }
            if !pause(&self.cancel, &mut backoff).await {
                return None;
            }
        }
    }

    /// Applies one batch (or handles its failure). False when the worker must stop.
    async fn step(&mut self, position: &mut Position, head: u64) -> bool {
        let events = match self.read(position, head).await {
            Ok(events) => events,
            Err(error) => {
                self.failed(format!("cannot read the log: {error}"), None);
                return pause(&self.cancel, &mut position.backoff).await;
            }
        };
        // Narrow down to the failing event: first everything before it, then it alone.
        let (events, covered) = match position.failing {
            Some((failing, _)) if failing > position.at + 1 => (
                events
                    .into_iter()
                    .filter(|e| e.position < failing)
                    .collect::<Vec<_>>(),
                failing - 1,
            ),
            Some((failing, _)) => (
                events
                    .into_iter()
                    .filter(|e| e.position == failing)
                    .collect(),
                failing,
            ),
            None => {
                let covered = events.last().map_or(position.at, |e| e.position);
                (events, covered)
            }
        };
        let relevant: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|e| self.spec.handles.contains(&e.event_type))
            .collect();
        if position.failing.is_none() && catching_up(covered, head) {
            let store = self.spec.store.clone();
            position.ahead = Some(ReadAhead {
                after: covered,
                events: tokio::spawn(async move { store.read_all(covered, CATCH_UP_BATCH).await }),
            });
        }
        let batch = OwnedBatch {
            run_setup: !position.setup_done,
            events: relevant,
            checkpoint: covered,
            park: None,
            unpark: None,
        };
        let (result, relevant) = self.apply(position, batch, head).await;
        match result {
            Ok(Applied { covered, applied }) => {
                self.advanced(position, covered, applied, head);
                if position
                    .failing
                    .is_some_and(|(failing, _)| covered >= failing)
                {
                    position.failing = None;
                }
                true
            }
            Err(error) => {
                // The next batch will not start where the read ahead does; and a halted
                // worker should not hold it.
                position.ahead = None;
                self.failure(position, error, &relevant).await
            }
        }
    }

    /// The events after the checkpoint: those read ahead if they start there, else
    /// read now.
    async fn read(
        &self,
        position: &mut Position,
        head: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(mut ahead) = position.ahead.take()
            && ahead.after == position.at
            // A read task that failed to finish (it panicked) is done again here.
            && let Ok(events) = (&mut ahead.events).await
        {
            return events;
        }
        let size = if catching_up(position.at, head) {
            CATCH_UP_BATCH
        } else {
            BATCH
        };
        self.spec.store.read_all(position.at, size).await
    }

    /// Runs a batch on a blocking thread, taking a catch-up turn if far behind. The
    /// events come back if the batch failed (to narrow it down), and are freed on the
    /// blocking thread if it succeeded.
    async fn apply(
        &self,
        position: &mut Position,
        batch: OwnedBatch,
        head: u64,
    ) -> (Result<Applied, BatchError>, Vec<RecordedEvent>) {
        let _turn = if catching_up(position.at, head) {
            self.spec.catch_up.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let handler = self.spec.handler.clone();
        let db = position.db.take().expect("the worker holds its database");
        let outcome = tokio::task::spawn_blocking(move || {
            let (db, result) = handler.apply_batch(db, &batch.as_batch());
            match result {
                Ok(covered) => {
                    // A batch cut short at its time budget covers less than it was
                    // given.
                    let applied = batch.events.iter().filter(|e| e.position <= covered);
                    let applied = applied.count() as u64;
                    (db, Ok(Applied { covered, applied }), Vec::new())
                }
                Err(error) => (db, Err(error), batch.events),
            }
        })
        .await;
        match outcome {
            Ok((db, result, events)) => {
                position.db = Some(db);
                (result, events)
            }
            // The blocking task panicked (a host bug) and took the connection with
            // it; reopen the database for the next attempt.
            Err(error) => {
                let error = match ProjectionDb::open(
                    &self.spec.path,
                    false,
                    self.spec.handler.sql_bounds(),
                ) {
                    Ok(db) => {
                        position.db = Some(db);
                        BatchError::Store(ReadStoreError::Io(std::io::Error::other(error)))
                    }
                    Err(error) => BatchError::Store(error),
                };
                (Err(error), Vec::new())
            }
        }
    }

    fn advanced(&self, position: &mut Position, covered: u64, applied: u64, head: u64) {
        position.at = covered;
        position.setup_done = true;
        position.backoff = FIRST_BACKOFF;
        self.checkpoint.send_replace(covered);
        let key = self.spec.key;
        crate::metrics::projection_applied(&self.spec.name, key.version, key.generation, applied);
        self.update(|s| {
            s.events_applied += applied;
            s.ready = true;
            if s.state == State::Failed {
                s.state = State::CatchingUp;
                s.error = None;
                s.failed_at = None;
            }
            s.progress(covered, head);
        });
    }

    /// Handles a failed batch. False when the worker must stop.
    async fn failure(
        &mut self,
        position: &mut Position,
        error: BatchError,
        batch: &[RecordedEvent],
    ) -> bool {
        tracing::warn!(projection = %self.spec.name, version = %self.spec.key, %error, "projection batch failed");
        let key = self.spec.key;
        crate::metrics::projection_failed(&self.spec.name, key.version, key.generation);
        let Some(failed_at) = error.position() else {
            self.failed(error.to_string(), None);
            return pause(&self.cancel, &mut position.backoff).await;
        };
        let attempts = match position.failing {
            Some((at, attempts)) if at == failed_at => attempts + 1,
            _ => 1,
        };
        position.failing = Some((failed_at, attempts));
        self.failed(error.to_string(), Some(failed_at));
        // Only a batch of the failing event alone counts as an attempt at it; a larger
        // batch is narrowed down first.
        let alone = batch.len() == 1 && batch[0].position == failed_at;
        let policy = *self.spec.policy.borrow();
        if !alone || attempts < policy.max_attempts {
            return pause(&self.cancel, &mut position.backoff).await;
        }
        match policy.on_failure {
            OnFailure::Stop => {
                tracing::error!(projection = %self.spec.name, version = %self.spec.key, position = failed_at, "projection halted at a failing event");
                position.halted = true;
                self.update(|s| s.halted = true);
                true
            }
            OnFailure::Skip => {
                let parked = Parked {
                    position: failed_at,
                    event_type: batch[0].event_type.clone(),
                    error: error.to_string(),
                    parked_at: jiff::Timestamp::now().to_string(),
                };
                tracing::warn!(projection = %self.spec.name, version = %self.spec.key, position = failed_at, "event parked");
                let head = *self.spec.store.head().borrow();
                let skip = OwnedBatch {
                    run_setup: false,
                    events: Vec::new(),
                    checkpoint: failed_at,
                    park: Some(parked),
                    unpark: None,
                };
                match self.apply(position, skip, head).await.0 {
                    Ok(_) => {
                        position.failing = None;
                        self.advanced(position, failed_at, 0, head);
                        self.update(|s| s.parked += 1);
                        true
                    }
                    Err(error) => {
                        self.failed(
                            format!("cannot park event {failed_at}: {error}"),
                            Some(failed_at),
                        );
                        pause(&self.cancel, &mut position.backoff).await
                    }
                }
            }
        }
    }

    async fn serve(&mut self, request: Request, position: &mut Position) {
        match request {
            Request::Resume => {
                if position.halted {
                    tracing::info!(projection = %self.spec.name, version = %self.spec.key, "projection resumed");
                }
                position.halted = false;
                self.update(|s| s.halted = false);
                position.failing = None;
                position.backoff = FIRST_BACKOFF;
            }
            Request::RetryParked {
                position: at,
                reply,
            } => {
                let result = self.retry_parked(position, at).await;
                let _ = reply.send(result);
            }
            Request::DropParked {
                position: at,
                reply,
            } => {
                let result = match position.db.as_mut() {
                    Some(db) => db.unpark(at).map_err(ParkedError::from),
                    None => Err(ParkedError::Busy),
                };
                if matches!(result, Ok(true)) {
                    self.update(|s| s.parked = s.parked.saturating_sub(1));
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Applies a parked event again through the current code, keeping the checkpoint
    /// where it is. Note that the event lands after events that followed it in the log.
    async fn retry_parked(&mut self, position: &mut Position, at: u64) -> Result<(), ParkedError> {
        let parked = position.db.as_ref().ok_or(ParkedError::Busy)?.parked()?;
        if !parked.iter().any(|p| p.position == at) {
            return Err(ParkedError::NotParked(at));
        }
        let event = self
            .spec
            .store
            .read_all(at - 1, 1)
            .await?
            .into_iter()
            .find(|e| e.position == at)
            .ok_or(ParkedError::MissingEvent(at))?;
        let batch = OwnedBatch {
            run_setup: false,
            events: vec![event],
            checkpoint: position.at,
            park: None,
            unpark: Some(at),
        };
        let head = *self.spec.store.head().borrow();
        self.apply(position, batch, head)
            .await
            .0
            .map_err(ParkedError::Failed)?;
        // (A batch of one event is never cut short.)
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.update(|s| s.parked = s.parked.saturating_sub(1));
        Ok(())
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
}

/// A batch whose events are owned, to cross onto a blocking thread.
struct OwnedBatch {
    run_setup: bool,
    events: Vec<RecordedEvent>,
    checkpoint: u64,
    park: Option<Parked>,
    unpark: Option<u64>,
}

/// What a batch that succeeded did.
struct Applied {
    /// The checkpoint it committed.
    covered: u64,
    /// How many of its events it applied.
    applied: u64,
}

impl OwnedBatch {
    fn as_batch(&self) -> Batch<'_> {
        Batch {
            run_setup: self.run_setup,
            events: &self.events,
            checkpoint: self.checkpoint,
            park: self.park.clone(),
            unpark: self.unpark,
        }
    }
}

/// Whether a worker at `at` is far enough behind `head` to count as catching up.
fn catching_up(at: u64, head: u64) -> bool {
    head.saturating_sub(at) > CATCHING_UP
}

/// Waits out the backoff (doubling it); false if the worker was stopped meanwhile.
async fn pause(cancel: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = cancel.cancelled() => false,
    }
}
