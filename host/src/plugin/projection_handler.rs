//! Calling a projection: `setup` once per schema version, then the batch's events,
//! all inside the batch transaction of the projection's own database.
//!
//! A 0.1.0 projection is called once per event (`apply`). A batch holds its database
//! (and, catching up, a turn among catching-up workers) for at most about one
//! deadline: each call has the deadline, and once a batch has run for a deadline's
//! worth of time it commits what it has applied and ends, so a slow projection makes
//! progress without keeping other work waiting.
//!
//! A 0.2.0 projection is called once per batch (`apply-batch`), and that call has the
//! deadline. When the guest names the event that failed, the batch fails at that event
//! and the worker narrows down to it as for 0.1.0. When it cannot (the guest trapped,
//! ran past the deadline, or ignored a statement that lost the batch), the failing
//! event is unknown: the batch fails without a position, and the next calls hand the
//! guest one event, then twice as many after each success, so the failing event ends
//! up alone in a call (and then fails at its position) while the others go through.
//! The same size bound keeps a slow projection's calls at about a quarter to a half of
//! the deadline, and a batch's events within an eighth of the instance's memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::types as wit;
use super::bindings::{v0_1, v0_2};
use super::deadline::set_deadline;
use super::describe::{Description, quote};
use super::error::{CallError, LoadError};
use super::events::{slice_len, to_wit_event};
use super::host::HostState;
use super::linked::{Linked, World};
use super::runtime::Runtime;
use super::world::{Contract, PluginKind};
use crate::event_store::RecordedEvent;
use crate::read_store::{Parked, ProjectionDb, ReadStoreError, SqlBounds};

/// A projection plugin, linked and ready to instantiate.
pub struct ProjectionHandler {
    linked: Linked<Bindings>,
    /// For 0.2.0: the most events one `apply-batch` call gets (see the module docs).
    batch_limit: AtomicUsize,
}

/// The linked component, by contract.
enum Pre {
    V0_1(v0_1::projection::ProjectionPre<HostState>),
    V0_2(v0_2::projection::ProjectionPre<HostState>),
}

/// One instance's exports, by contract.
enum Bindings {
    V0_1(v0_1::projection::Projection),
    V0_2(v0_2::projection::Projection),
}

impl World for Bindings {
    const KIND: PluginKind = PluginKind::Projection;
    const HANDLER: &'static str = "ProjectionHandler";
    type Pre = Pre;

    fn pre(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        match contract {
            Contract::V0_1 => v0_1::projection::ProjectionPre::new(pre).map(Pre::V0_1),
            Contract::V0_2 => v0_2::projection::ProjectionPre::new(pre).map(Pre::V0_2),
        }
    }

    fn instantiate(pre: &Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        Ok(match pre {
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate(store)?),
        })
    }

    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::PluginInfo> {
        match self {
            Bindings::V0_1(b) => b
                .tessera_plugin0_1_0_projector()
                .call_describe(store)
                .map(Into::into),
            Bindings::V0_2(b) => b.tessera_plugin0_2_0_projector().call_describe(store),
        }
    }
}

impl Bindings {
    fn setup(&self, store: &mut Store<HostState>) -> wasmtime::Result<Result<(), String>> {
        match self {
            Bindings::V0_1(b) => b.tessera_plugin0_1_0_projector().call_setup(store),
            Bindings::V0_2(b) => b.tessera_plugin0_2_0_projector().call_setup(store),
        }
    }
}

/// The most events a 0.2.0 call gets as its size bound grows back.
const MAX_BATCH_LIMIT: usize = 1 << 16;

impl std::fmt::Debug for ProjectionHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.linked.fmt(f)
    }
}

/// One transaction's worth of work for a projection.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Run `setup` first (the version's storage is new).
    pub run_setup: bool,
    /// The events to apply, in log order.
    pub events: &'a [RecordedEvent],
    /// The checkpoint to commit: the last position the batch covers, which may be past
    /// the last event delivered (events the projection does not consume advance it too).
    /// A batch cut short at its time budget commits the last event it applied instead.
    pub checkpoint: u64,
    /// An event to park (skip) in the same transaction.
    pub park: Option<Parked>,
    /// A parked event to remove in the same transaction (it was applied on retry).
    pub unpark: Option<u64>,
}

/// Why a batch was not applied. The batch's transaction is rolled back in every case.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The projection's `setup` returned an error.
    #[error("setup failed: {0}")]
    Setup(String),
    /// The projection returned an error for the event at `position`.
    #[error("apply failed at position {position}: {reason}")]
    Apply { position: u64, reason: String },
    /// The guest trapped or ran past its deadline (at `position`, if during a call of
    /// that event alone), or a 0.2.0 batch failed at an event it did not name.
    #[error("{error}")]
    Call {
        position: Option<u64>,
        error: CallError,
    },
    /// The projection's database failed.
    #[error("read store: {0}")]
    Store(#[from] ReadStoreError),
}

impl BatchError {
    /// The position of the event that failed, if one did.
    pub fn position(&self) -> Option<u64> {
        match self {
            BatchError::Apply { position, .. } => Some(*position),
            BatchError::Call { position, .. } => *position,
            _ => None,
        }
    }
}

impl ProjectionHandler {
    /// Links a projection plugin and asks it what it is.
    pub(super) fn load(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<(Description, Self), LoadError> {
        let (description, linked) = Linked::load(runtime, component, contract)?;
        let handler = ProjectionHandler {
            linked,
            batch_limit: AtomicUsize::new(MAX_BATCH_LIMIT),
        };
        Ok((description, handler))
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> Contract {
        self.linked.contract()
    }

    /// How long one call of this projection may run.
    pub fn deadline(&self) -> std::time::Duration {
        self.linked.caller.limits.deadline
    }

    /// What this projection's database may hold, and the largest value its statements
    /// may make: small enough that no value approaches the instance's memory bound.
    pub fn sql_bounds(&self) -> SqlBounds {
        let default = SqlBounds::default();
        SqlBounds {
            max_length: default
                .max_length
                .min(self.linked.caller.limits.max_memory / 4)
                .max(1 << 16),
            max_bytes: self.linked.caller.limits.max_disk,
        }
    }

    /// Applies a batch in one transaction of `db` and commits it with its checkpoint.
    /// Blocking. The database comes back in every case, with the checkpoint committed
    /// on success; on error nothing of the batch was committed.
    pub fn apply_batch(
        &self,
        db: ProjectionDb,
        batch: &Batch<'_>,
    ) -> (ProjectionDb, Result<u64, BatchError>) {
        let mut store = self.linked.caller.store();
        store.data_mut().projection_db = Some(db);
        let timer = self.linked.caller.timer(crate::metrics::Call::Apply);
        let result = self.run(&mut store, batch);
        drop(timer);
        let mut db = store
            .data_mut()
            .projection_db
            .take()
            .expect("the batch's database is still in the store");
        if result.is_err() {
            db.rollback();
        }
        (db, result)
    }

    fn run(&self, store: &mut Store<HostState>, batch: &Batch<'_>) -> Result<u64, BatchError> {
        let deadline = self.linked.caller.limits.deadline;
        set_deadline(store, deadline);
        let bindings = self
            .linked
            .instantiate(&mut *store)
            .map_err(|e| self.call_error(None, e))?;
        db(store).begin()?;
        if batch.run_setup {
            set_deadline(store, deadline);
            bindings
                .setup(&mut *store)
                .map_err(|e| self.call_error(None, e))?
                .map_err(BatchError::Setup)?;
            if let Some(reason) = db(store).lost() {
                return Err(BatchError::Setup(reason.to_string()));
            }
        }
        let checkpoint = match &bindings {
            Bindings::V0_1(bindings) => self.apply_each(store, bindings, batch)?,
            Bindings::V0_2(bindings) => self.apply_at_once(store, bindings, batch)?,
        };
        let db = db(store);
        if let Some(parked) = &batch.park {
            db.park(parked)?;
        }
        if let Some(position) = batch.unpark {
            db.unpark(position)?;
        }
        db.commit(checkpoint, true)?;
        Ok(checkpoint)
    }

    /// 0.1.0: one `apply` per event, until the batch's time is up. Returns the
    /// checkpoint to commit.
    fn apply_each(
        &self,
        store: &mut Store<HostState>,
        bindings: &v0_1::projection::Projection,
        batch: &Batch<'_>,
    ) -> Result<u64, BatchError> {
        let deadline = self.linked.caller.limits.deadline;
        let started = Instant::now();
        let mut checkpoint = batch.checkpoint;
        for (done, event) in batch.events.iter().enumerate() {
            if done > 0 && started.elapsed() >= deadline {
                // The batch's time is up: commit what it has applied; the worker goes
                // on from there in its next batch.
                checkpoint = batch.events[done - 1].position;
                break;
            }
            set_deadline(store, deadline);
            bindings
                .tessera_plugin0_1_0_projector()
                .call_apply(&mut *store, &to_wit_event(event).into())
                .map_err(|e| self.call_error(Some(event.position), e))?
                .map_err(|reason| BatchError::Apply {
                    position: event.position,
                    reason,
                })?;
            // A guest that ignored the error of a statement that lost the batch still
            // failed at this event.
            if let Some(reason) = db(store).lost() {
                return Err(BatchError::Apply {
                    position: event.position,
                    reason: reason.to_string(),
                });
            }
        }
        Ok(checkpoint)
    }

    /// 0.2.0: one `apply-batch` of the batch's events, or of as many as the size bound
    /// allows (the batch then commits up to the last of them). Returns the checkpoint
    /// to commit.
    fn apply_at_once(
        &self,
        store: &mut Store<HostState>,
        bindings: &v0_2::projection::Projection,
        batch: &Batch<'_>,
    ) -> Result<u64, BatchError> {
        if batch.events.is_empty() {
            return Ok(batch.checkpoint);
        }
        let deadline = self.linked.caller.limits.deadline;
        let limit = self.batch_limit.load(Ordering::Relaxed).max(1);
        let count = slice_len(batch.events, self.linked.caller.limits.max_memory / 8).min(limit);
        let events = &batch.events[..count];
        let checkpoint = if count < batch.events.len() {
            events[count - 1].position
        } else {
            batch.checkpoint
        };
        let alone = match events {
            [event] => Some(event.position),
            _ => None,
        };
        let listed: Vec<wit::Event> = events.iter().map(to_wit_event).collect();
        set_deadline(store, deadline);
        let started = Instant::now();
        let outcome = bindings
            .tessera_plugin0_2_0_projector()
            .call_apply_batch(&mut *store, &listed);
        let took = started.elapsed();
        let failure = match outcome {
            Err(error) => {
                let error = self.call_error(alone, error);
                if !matches!(
                    &error,
                    BatchError::Call {
                        error: CallError::Stopped { .. },
                        ..
                    }
                ) {
                    self.failed_unplaced();
                }
                return Err(error);
            }
            Ok(Err(failure)) => failure,
            Ok(Ok(())) => {
                // A guest that ignored the error of a statement that lost the batch
                // failed at an event it did not name.
                if let Some(reason) = db(store).lost() {
                    self.failed_unplaced();
                    return Err(match alone {
                        Some(position) => BatchError::Apply {
                            position,
                            reason: reason.to_string(),
                        },
                        None => BatchError::Call {
                            position: None,
                            error: self.linked.caller.bad_output(format!(
                                "a batch of {count} events was lost ({reason}), at an event \
                                 the projection did not name"
                            )),
                        },
                    });
                }
                self.succeeded(count, took, deadline);
                return Ok(checkpoint);
            }
        };
        let Some(event) = usize::try_from(failure.index)
            .ok()
            .and_then(|index| events.get(index))
        else {
            self.failed_unplaced();
            return Err(BatchError::Call {
                position: alone,
                error: self.linked.caller.bad_output(format!(
                    "apply-batch failed at index {} of a batch of {count} events: {}",
                    failure.index,
                    quote(&failure.message)
                )),
            });
        };
        Err(BatchError::Apply {
            position: event.position,
            reason: failure.message,
        })
    }

    /// A 0.2.0 call failed at an event it did not name: the next call gets one event.
    fn failed_unplaced(&self) {
        self.batch_limit.store(1, Ordering::Relaxed);
    }

    /// A 0.2.0 call of `count` events succeeded in `took`: more events per call while
    /// calls are quick, fewer once they take half the deadline.
    fn succeeded(&self, count: usize, took: Duration, deadline: Duration) {
        let limit = self.batch_limit.load(Ordering::Relaxed);
        let next = if took >= deadline / 2 {
            (count / 2).max(1)
        } else if took < deadline / 4 && count >= limit {
            limit.saturating_mul(2).min(MAX_BATCH_LIMIT)
        } else {
            limit
        };
        self.batch_limit.store(next, Ordering::Relaxed);
    }

    fn call_error(&self, position: Option<u64>, error: wasmtime::Error) -> BatchError {
        BatchError::Call {
            position,
            error: self.linked.caller.fail(error),
        }
    }
}

fn db(store: &mut wasmtime::Store<HostState>) -> &mut ProjectionDb {
    store
        .data_mut()
        .projection_db
        .as_mut()
        .expect("the batch's database is in the store")
}
