//! Calling a projection: `setup` once per schema version, `apply` per event, both
//! inside the batch transaction of the projection's own database.
//!
//! A batch holds its database (and, catching up, a turn among catching-up workers)
//! for at most about one deadline: each call has the deadline, and once a batch has
//! run for a deadline's worth of time it commits what it has applied and ends, so a
//! slow projection makes progress without keeping other work waiting.

use std::sync::Arc;

use wasmtime::component::Component;

use super::bindings::projection::ProjectionPre;
use super::command_handler::to_wit_event;
use super::host::{HostState, LogRate};
use super::{
    CallError, CallLimits, Description, LoadError, PluginKind, Runtime, describe_plugin,
    pre_instantiate, set_deadline, wrong_world,
};
use crate::event_store::RecordedEvent;
use crate::read_store::{Parked, ProjectionDb, ReadStoreError, SqlBounds};

/// A projection plugin, linked and ready to instantiate.
pub struct ProjectionHandler {
    name: Arc<str>,
    runtime: Runtime,
    limits: CallLimits,
    log_rate: Arc<LogRate>,
    pre: ProjectionPre<HostState>,
}

impl std::fmt::Debug for ProjectionHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
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
    /// The projection's `apply` returned an error for the event at `position`.
    #[error("apply failed at position {position}: {reason}")]
    Apply { position: u64, reason: String },
    /// The guest trapped or ran past its deadline (at `position`, if during an apply).
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
    pub(super) fn link(runtime: Runtime, component: &Component) -> Result<Self, LoadError> {
        let pre = pre_instantiate(
            &runtime.inner.projection_linker,
            component,
            PluginKind::Projection,
        )?;
        let pre = ProjectionPre::new(pre).map_err(|e| wrong_world(PluginKind::Projection, e))?;
        Ok(ProjectionHandler {
            name: Arc::from(PluginKind::Projection.to_string()),
            limits: runtime.limits().describing(),
            log_rate: Arc::default(),
            runtime,
            pre,
        })
    }

    pub(super) fn describe(&mut self) -> Result<Description, LoadError> {
        let (description, name, limits) = describe_plugin(
            &self.runtime,
            PluginKind::Projection,
            |store| self.pre.instantiate(store),
            |bindings, store| bindings.tessera_plugin_projector().call_describe(store),
        )?;
        self.name = name;
        self.limits = limits;
        Ok(description)
    }

    /// How long one call of this projection may run.
    pub fn deadline(&self) -> std::time::Duration {
        self.limits.deadline
    }

    /// What this projection's database may hold, and the largest value its statements
    /// may make: small enough that no value approaches the instance's memory bound.
    pub fn sql_bounds(&self) -> SqlBounds {
        let default = SqlBounds::default();
        SqlBounds {
            max_length: default
                .max_length
                .min(self.limits.max_memory / 4)
                .max(1 << 16),
            max_bytes: self.limits.max_disk,
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
        let mut store = self
            .runtime
            .store(self.name.clone(), self.limits, self.log_rate.clone());
        store.data_mut().projection_db = Some(db);
        let result = self.run(&mut store, batch);
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

    fn run(
        &self,
        store: &mut wasmtime::Store<HostState>,
        batch: &Batch<'_>,
    ) -> Result<u64, BatchError> {
        let deadline = self.limits.deadline;
        let started = std::time::Instant::now();
        let call_error = |position, e| BatchError::Call {
            position,
            error: CallError::from_wasmtime(&self.name, deadline, self.runtime.stopping(), e),
        };
        set_deadline(store, deadline);
        let bindings = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| call_error(None, e))?;
        db(store).begin()?;
        if batch.run_setup {
            set_deadline(store, deadline);
            bindings
                .tessera_plugin_projector()
                .call_setup(&mut *store)
                .map_err(|e| call_error(None, e))?
                .map_err(BatchError::Setup)?;
            if let Some(reason) = db(store).lost() {
                return Err(BatchError::Setup(reason.to_string()));
            }
        }
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
                .tessera_plugin_projector()
                .call_apply(&mut *store, &to_wit_event(event))
                .map_err(|e| call_error(Some(event.position), e))?
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
}

fn db(store: &mut wasmtime::Store<HostState>) -> &mut ProjectionDb {
    store
        .data_mut()
        .projection_db
        .as_mut()
        .expect("the batch's database is in the store")
}
