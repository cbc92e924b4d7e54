//! The projection scheduler: one worker per projection version, turning the log into
//! read models.
//!
//! Guarantees:
//! - Events reach a projection in log order, each exactly once: a batch's effects and
//!   its checkpoint commit in one transaction of the projection's database, so after a
//!   crash a worker resumes from the last committed checkpoint.
//! - Workers wake when the write store's head moves (no polling delay).
//! - A failing projection retries with backoff and never stops commands or other
//!   projections.
//! - `inline` projections can be awaited by position ([`Projections::wait_inline`]);
//!   `async` ones never delay anything.

mod status;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::event_store::EventStore;
use crate::plugin::{Catalog, ProjectionMode, ProjectionRoute};
use crate::read_store::{ReadPool, projection_path};

pub use status::{ProjectionStatus, State};
use worker::Worker;

/// Runs the projections of the current catalog.
#[derive(Debug)]
pub struct Projections {
    store: Arc<dyn EventStore>,
    root: PathBuf,
    workers: Mutex<BTreeMap<String, Worker>>,
}

/// A projection a query reads: its pool and its checkpoint.
#[derive(Debug, Clone)]
pub struct ReadAccess {
    pub name: String,
    pub pool: Arc<ReadPool>,
    pub checkpoint: watch::Receiver<u64>,
}

impl Projections {
    /// `root` is the folder of projection databases.
    pub fn new(store: Arc<dyn EventStore>, root: PathBuf) -> Self {
        Projections {
            store,
            root,
            workers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the running workers match `catalog`: starts new projections, restarts
    /// those whose code or schema version changed (a restarted worker with the same
    /// schema version continues from its checkpoint), stops removed ones.
    pub fn sync(&self, catalog: &Catalog) {
        let mut workers = self.workers.lock().expect("workers lock");
        let wanted: BTreeMap<&str, &Arc<ProjectionRoute>> = catalog
            .projections()
            .map(|route| (route.plugin.as_str(), route))
            .collect();
        workers.retain(|name, worker| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|route| route.digest == worker.route.digest);
            if !keep {
                worker.stop();
            }
            keep
        });
        for (name, route) in wanted {
            if !workers.contains_key(name) {
                let path = projection_path(&self.root, name, route.schema_version);
                let worker = Worker::start(route.clone(), path, self.store.clone());
                workers.insert(name.to_string(), worker);
            }
        }
    }

    /// Stops every worker after its current batch and waits for them.
    pub async fn shutdown(&self) {
        let stopping: Vec<Worker> = {
            let mut workers = self.workers.lock().expect("workers lock");
            std::mem::take(&mut *workers).into_values().collect()
        };
        for worker in stopping {
            worker.stop();
            worker.join().await;
        }
    }

    /// Every projection version's status.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let head = *self.store.head().borrow();
        let workers = self.workers.lock().expect("workers lock");
        workers.values().map(|worker| worker.status(head)).collect()
    }

    /// Read access to the named projections, or the first name that has none.
    pub fn read_access(&self, names: &[String]) -> Result<Vec<ReadAccess>, String> {
        let workers = self.workers.lock().expect("workers lock");
        names
            .iter()
            .map(|name| {
                let worker = workers
                    .get(name)
                    .filter(|worker| worker.ready())
                    .ok_or_else(|| name.clone())?;
                Ok(ReadAccess {
                    name: name.clone(),
                    pool: worker.pool.clone(),
                    checkpoint: worker.checkpoint(),
                })
            })
            .collect()
    }

    /// Waits until every inline projection has applied the log up to `position`, or
    /// `timeout` passes. Returns whether they all got there.
    pub async fn wait_inline(&self, position: u64, timeout: Duration) -> bool {
        let checkpoints: Vec<watch::Receiver<u64>> = {
            let workers = self.workers.lock().expect("workers lock");
            workers
                .values()
                .filter(|worker| worker.route.mode == ProjectionMode::Inline)
                .map(Worker::checkpoint)
                .collect()
        };
        wait_all(checkpoints, position, timeout).await
    }
}

/// Waits until every checkpoint reaches `position`, or `timeout` passes.
pub async fn wait_all(
    checkpoints: Vec<watch::Receiver<u64>>,
    position: u64,
    timeout: Duration,
) -> bool {
    let all = async {
        for mut checkpoint in checkpoints {
            if checkpoint.wait_for(|at| *at >= position).await.is_err() {
                // The worker stopped (replaced or shutting down): it will not get there.
                return false;
            }
        }
        true
    };
    tokio::time::timeout(timeout, all).await.unwrap_or(false)
}
