//! The projection scheduler: one worker per projection version, turning the log into
//! read models, and the lifecycle that lets versions replace each other without
//! downtime.
//!
//! The lifecycle's rules are a pure state machine (`machine.rs`, unit-tested
//! transition by transition); this module is its shell: it feeds the machine events
//! (the catalog changed, workers made progress, an operator asked), keeps the state it
//! returns, and runs the effects (stop and start workers, delete databases, persist).
//! `access.rs` answers the read side: read access, and a command's inline wait.
//!
//! Guarantees:
//! - Events reach a projection version in log order, each exactly once: a batch's
//!   effects and its checkpoint commit in one transaction of the version's own
//!   database, so after a crash a worker resumes from the last committed checkpoint.
//!   Two workers never share a database (a replacement starts after the old one ended).
//! - Workers wake when the write store's head moves (no polling delay).
//! - A new schema version is built beside the active one, from position 0, and takes
//!   over when it has caught up, never behind the active one (or when promoted);
//!   queries read the active version until the pointer moves, atomically. The old
//!   version keeps up to date for an instant rollback. A rebuild builds a new
//!   generation of the active version the same way and deletes the old generation
//!   after the swap. New code for a version replaces its worker without a gap for
//!   readers: queries and inline waits hold on for the replacement.
//! - A failing projection retries with backoff, then stops or parks the event per its
//!   policy; it never stops commands or other projections. Catching-up workers take
//!   turns so live ones are not starved.
//! - The lifecycle (active versions, versions being built, policies) survives restarts
//!   (`lifecycle.json`); checkpoints and parked events live in each version's database.

mod access;
mod lifecycle;
mod machine;
mod status;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::event_store::EventStore;
use crate::plugin::{Catalog, PluginCode, Plugins, ProjectionHandler};
use crate::read_store::{Parked, ReadPool, projection_path, remove_projection_db};

pub use access::wait_all;
pub use lifecycle::{Cutover, OnFailure, Policy, VersionKey};
pub use status::{ProjectionStatus, State};
pub use worker::ParkedError;

use lifecycle::{Lifecycle, LifecycleFile, VersionRecord};
use machine::{Change, Effect, Event, Progress, Served, VersionId};
use worker::{Request, Spec, Worker};

/// How often the lifecycle checks whether a building version can take over.
const LIFECYCLE_TICK: Duration = Duration::from_millis(50);

/// A projection a query reads: its pool and its checkpoint.
#[derive(Debug, Clone)]
pub struct ReadAccess {
    pub name: String,
    /// The version read: answers from different versions never share a cache entry.
    pub key: VersionKey,
    /// Changes when the read model changes without its checkpoint moving (a parked
    /// event applied on retry), so cached answers from before are not served.
    pub revision: u64,
    pub pool: Arc<ReadPool>,
    pub checkpoint: watch::Receiver<u64>,
}

/// Why a lifecycle request did nothing. The refusals (unknown names, a request the
/// projection's state does not allow) are the caller's to fix; `NotRunning` passes
/// with time; `Io`, and a `Parked` store failure, are the host's.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No projection by that name was ever served: check the name.
    #[error("no projection named {0:?}")]
    UnknownProjection(String),
    /// The projection has no such schema version: check the version.
    #[error("projection {name:?} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    /// The active version cannot be retired; promote or roll back first.
    #[error("version {version} of {name:?} is active; promote another version first")]
    ActiveVersion { name: String, version: u32 },
    /// Nothing to roll back to: no version was active before this one.
    #[error("projection {0:?} has no previous version to roll back to")]
    NoPrevious(String),
    /// A promotion named no version and none is being built: name one.
    #[error("projection {0:?} has no version being built")]
    NothingBuilding(String),
    /// The projection has no active version (its first is not set up, or it was
    /// never served with one): nothing to rebuild or to read parked events from.
    #[error("projection {0:?} has no active version")]
    NoActiveVersion(String),
    /// The version's worker is not running at this moment: it is opening its database,
    /// being replaced by new code, or stopping. Try again shortly.
    #[error("projection {name:?} {key} is not running right now; try again")]
    NotRunning { name: String, key: VersionKey },
    /// The code that builds the version is neither served nor archived any more:
    /// deploy it again.
    #[error("the code of projection {name:?} ({digest}) is not at hand: {reason}")]
    CodeUnavailable {
        name: String,
        digest: String,
        reason: String,
    },
    /// A request about a parked event did nothing (see [`ParkedError`]).
    #[error(transparent)]
    Parked(#[from] ParkedError),
    /// Saving the lifecycle or deleting a version's storage failed: the host's
    /// failure, for an operator to look into.
    #[error("projection storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the projections and their versions.
#[derive(Debug)]
pub struct Projections {
    store: Arc<dyn EventStore>,
    plugins: Arc<Plugins>,
    root: PathBuf,
    file: LifecycleFile,
    catch_up: Arc<Semaphore>,
    /// Check each database's structure when a worker opens it.
    check_storage: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lifecycle: Lifecycle,
    workers: BTreeMap<VersionId, Worker>,
    /// Versions whose worker was stopped for new code and whose replacement has not
    /// started yet, with the replaced worker's deadline (which bounds a command's wait
    /// for the replacement). Readers wait for them as for a worker still opening:
    /// without this, a query in that moment was refused (`projection_unavailable`),
    /// and a command's response did not wait for an inline projection being replaced.
    replacing: BTreeMap<VersionId, Duration>,
    policies: BTreeMap<String, watch::Sender<Policy>>,
}

impl Inner {
    fn policy(&mut self, name: &str) -> watch::Receiver<Policy> {
        let policy = self
            .lifecycle
            .projections
            .get(name)
            .map(|s| s.policy)
            .unwrap_or_default();
        self.policies
            .entry(name.to_string())
            .or_insert_with(|| watch::channel(policy).0)
            .subscribe()
    }
}

/// What is left of a transition's effects once the lock is released: the stopped
/// workers to wait for, then the databases to delete, then the workers to start.
#[derive(Debug, Default)]
#[must_use]
struct Pending {
    stopped: Vec<Worker>,
    deletes: Vec<VersionId>,
    starts: Vec<(String, VersionRecord)>,
}

impl Projections {
    /// `root` is the folder of projection databases and of `lifecycle.json`. With
    /// `check_storage`, each database's structure is checked when it is opened.
    pub fn new(
        store: Arc<dyn EventStore>,
        plugins: Arc<Plugins>,
        root: PathBuf,
        check_storage: bool,
    ) -> std::io::Result<Self> {
        let file = LifecycleFile::new(&root);
        let lifecycle = file.load()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Projections {
            store,
            plugins,
            root,
            file,
            catch_up: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            check_storage,
            inner: Mutex::new(Inner {
                lifecycle,
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("projections lock")
    }

    /// Runs `event` through the lifecycle's state machine under the lock: keeps the new
    /// state, stops the workers it stops, saves it, sends new policies, and returns the
    /// rest of the effects for [`Projections::settle`], with the version an operator's
    /// event was about.
    fn transition(
        &self,
        inner: &mut Inner,
        event: Event<'_>,
    ) -> Result<(Pending, Option<VersionKey>), LifecycleError> {
        let transition = machine::step(&inner.lifecycle, event)?;
        let version = transition.version();
        inner.lifecycle = transition.lifecycle;
        let mut pending = Pending::default();
        for effect in transition.effects {
            match effect {
                Effect::Stop { id, replaced } => {
                    if let Some(worker) = inner.workers.remove(&id) {
                        worker.stop();
                        if replaced {
                            inner.replacing.insert(id, worker.deadline);
                        }
                        pending.stopped.push(worker);
                    }
                }
                Effect::Persist => {
                    if let Err(error) = self.file.save(&inner.lifecycle) {
                        tracing::error!(%error, "cannot save the projections' lifecycle");
                    }
                }
                Effect::Delete(id) => pending.deletes.push(id),
                Effect::Start { name, record } => pending.starts.push((name, record)),
                Effect::Policy { name, policy } => {
                    if let Some(sender) = inner.policies.get(&name) {
                        sender.send_replace(policy);
                    }
                }
            }
        }
        for change in &transition.changes {
            match change {
                Change::Building((name, key)) => {
                    tracing::info!(projection = %name, version = %key, "building a new version beside the active one");
                }
                Change::CutOver((name, key)) => {
                    tracing::info!(projection = %name, version = %key, "cut over: queries now read this version");
                }
                Change::Promoted((name, key)) => {
                    tracing::info!(projection = %name, version = %key, "promoted");
                }
                Change::RolledBack((name, key)) => {
                    tracing::info!(projection = %name, version = %key, "rolled back");
                }
                Change::Rebuilding((name, key)) => {
                    tracing::info!(projection = %name, version = %key, "rebuilding");
                }
                Change::Retired { name, version } => {
                    tracing::info!(projection = %name, version, "retired");
                }
            }
        }
        Ok((pending, version))
    }

    /// Runs what a transition left, in order: waits for the stopped workers to end (a
    /// replacement must not start before the worker it replaces has ended, or two
    /// workers could apply the same events to one database), deletes databases, then
    /// starts workers with their code from `catalog` or the archive. Does all it can
    /// and returns the first failure; a version whose fresh storage could not be
    /// prepared is not started.
    async fn settle(
        &self,
        pending: Pending,
        catalog: Option<&Catalog>,
    ) -> Result<(), LifecycleError> {
        let mut failure = None;
        for worker in pending.stopped {
            worker.join().await;
        }
        let mut undeleted = BTreeSet::new();
        for id in pending.deletes {
            let path = self.path(&id.0, id.1);
            if let Err(error) = remove_projection_db(&path) {
                tracing::warn!(file = %path.display(), %error, "cannot remove projection storage");
                undeleted.insert(id);
                failure.get_or_insert(LifecycleError::Io(error));
            }
        }
        for (name, record) in pending.starts {
            let id = (name.clone(), record.key);
            let handler = if undeleted.contains(&id) {
                None
            } else {
                match self.code(&name, &record.digest, catalog).await {
                    Ok(handler) => Some(handler),
                    Err(error) => {
                        tracing::error!(projection = %name, version = %record.key, %error, "cannot run this version: its code is unavailable");
                        failure.get_or_insert(error);
                        None
                    }
                }
            };
            match handler {
                Some(handler) => self.start(&name, &record, handler),
                None => {
                    self.lock().replacing.remove(&id);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// The code with `digest`: the served plugin's, or the archived version.
    async fn code(
        &self,
        name: &str,
        digest: &str,
        catalog: Option<&Catalog>,
    ) -> Result<Arc<ProjectionHandler>, LifecycleError> {
        if let Some(route) = catalog.and_then(|c| {
            c.projections()
                .find(|r| r.plugin == name && r.digest == digest)
        }) {
            return Ok(route.handler.clone());
        }
        let unavailable = |reason: String| LifecycleError::CodeUnavailable {
            name: name.to_string(),
            digest: digest.to_string(),
            reason,
        };
        match self
            .plugins
            .load_archived(digest)
            .await
            .map_err(unavailable)?
            .code
        {
            PluginCode::Projection(handler) => Ok(handler),
            _ => Err(unavailable(
                "the archived version is not a projection".into(),
            )),
        }
    }

    fn start(&self, name: &str, record: &VersionRecord, handler: Arc<ProjectionHandler>) {
        let mut inner = self.lock();
        let id = (name.to_string(), record.key);
        inner.replacing.remove(&id);
        if inner.workers.contains_key(&id) {
            return;
        }
        let policy = inner.policy(name);
        let worker = Worker::start(Spec {
            name: name.to_string(),
            key: record.key,
            digest: record.digest.clone(),
            handles: Arc::new(record.handles.iter().cloned().collect()),
            handler,
            path: self.path(name, record.key),
            store: self.store.clone(),
            policy,
            catch_up: self.catch_up.clone(),
            check: self.check_storage,
        });
        inner.workers.insert(id, worker);
    }

    fn path(&self, name: &str, key: VersionKey) -> PathBuf {
        projection_path(&self.root, name, key.version, key.generation)
    }

    /// Makes the running versions match `catalog`: a new schema version starts
    /// building beside the active one; new code for a known version replaces its
    /// worker (which continues from the checkpoint); every recorded version of a served
    /// projection runs (older ones with their archived code); projections no longer
    /// served stop (their storage and lifecycle stay for a redeploy).
    pub async fn sync(&self, catalog: &Catalog) {
        let mut served: Vec<Served> = catalog
            .projections()
            .map(|route| {
                let mut handles: Vec<String> = route.handles.iter().cloned().collect();
                handles.sort();
                Served {
                    name: route.plugin.clone(),
                    schema_version: route.schema_version,
                    digest: route.digest.clone(),
                    mode: route.mode,
                    handles,
                }
            })
            .collect();
        served.sort_by(|a, b| a.name.cmp(&b.name));
        let now = jiff::Timestamp::now().to_string();
        let pending = {
            let mut inner = self.lock();
            let running: BTreeSet<VersionId> = inner.workers.keys().cloned().collect();
            let event = Event::Catalog {
                served: &served,
                running: &running,
                now: &now,
            };
            match self.transition(&mut inner, event) {
                Ok((pending, _)) => pending,
                Err(error) => {
                    tracing::error!(%error, "cannot follow the plugin catalog");
                    return;
                }
            }
        };
        // Failures are logged where they happen; the versions that could start run.
        let _ = self.settle(pending, Some(catalog)).await;
    }

    /// Moves the active pointer to versions that have caught up, until `stop`.
    pub async fn run_lifecycle(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(LIFECYCLE_TICK) => {}
                () = stop.cancelled() => break,
            }
            if let Some(pending) = self.cut_over() {
                // A failed deletion is logged; the replaced generation is out of the
                // lifecycle either way.
                let _ = self.settle(pending, None).await;
            }
        }
    }

    /// Lets every building version that has caught up take over (per policy).
    fn cut_over(&self) -> Option<Pending> {
        let head = *self.store.head().borrow();
        let mut inner = self.lock();
        let building = inner
            .lifecycle
            .projections
            .values()
            .any(|state| state.versions.iter().any(|r| r.pending));
        if !building {
            return None;
        }
        let running: BTreeMap<VersionId, Progress> = inner
            .workers
            .iter()
            .map(|(id, worker)| {
                let status = worker.status.lock().expect("status lock");
                let progress = Progress {
                    checkpoint: *worker.checkpoint().borrow(),
                    ready: status.ready,
                    failed: status.state == State::Failed,
                };
                (id.clone(), progress)
            })
            .collect();
        let event = Event::Progress {
            head,
            running: &running,
        };
        self.transition(&mut inner, event)
            .ok()
            .map(|(pending, _)| pending)
    }

    /// Runs an operator's `event`, and what it leaves to do.
    async fn operate(
        &self,
        event: Event<'_>,
        catalog: Option<&Catalog>,
    ) -> Result<Option<VersionKey>, LifecycleError> {
        let (pending, version) = {
            let mut inner = self.lock();
            self.transition(&mut inner, event)?
        };
        self.settle(pending, catalog).await?;
        Ok(version)
    }

    /// Makes `version` (or the version being built) active now. Promoting a rebuild
    /// retires the generation it replaces.
    pub async fn promote(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<VersionKey, LifecycleError> {
        let key = self.operate(Event::Promote { name, version }, None).await?;
        Ok(key.expect("a promotion names the version it made active"))
    }

    /// Makes the previously active version active again.
    pub async fn rollback(&self, name: &str) -> Result<VersionKey, LifecycleError> {
        let key = self.operate(Event::Rollback { name }, None).await?;
        Ok(key.expect("a rollback names the version it made active"))
    }

    /// Stops a non-active version and deletes its storage.
    pub async fn retire(&self, name: &str, version: u32) -> Result<(), LifecycleError> {
        self.operate(Event::Retire { name, version }, None).await?;
        Ok(())
    }

    /// Rebuilds the active version into fresh storage beside the live one; it takes
    /// over when it has caught up, and the old storage is deleted.
    pub async fn rebuild(
        &self,
        name: &str,
        catalog: &Catalog,
    ) -> Result<VersionKey, LifecycleError> {
        let now = jiff::Timestamp::now().to_string();
        let key = self
            .operate(Event::Rebuild { name, now: &now }, Some(catalog))
            .await?;
        Ok(key.expect("a rebuild names the generation it builds"))
    }

    /// Changes a projection's policies.
    pub async fn set_policy(&self, name: &str, policy: Policy) -> Result<(), LifecycleError> {
        self.operate(Event::SetPolicy { name, policy }, None)
            .await?;
        Ok(())
    }

    pub fn policy(&self, name: &str) -> Result<Policy, LifecycleError> {
        self.lock()
            .lifecycle
            .projections
            .get(name)
            .map(|state| state.policy)
            .ok_or_else(|| LifecycleError::UnknownProjection(name.to_string()))
    }

    /// Tells every worker of `name` halted at a failed event to try again.
    pub async fn resume(&self, name: &str) -> Result<(), LifecycleError> {
        let requests = self.workers_of(name)?;
        for worker in requests {
            self.send(name, worker, Request::Resume).await?;
        }
        Ok(())
    }

    /// The parked events of the active version of `name`.
    pub fn parked(&self, name: &str) -> Result<Vec<Parked>, LifecycleError> {
        let key = self.active(name)?;
        let access =
            self.read_access(&[name.to_string()])
                .map_err(|_| LifecycleError::NotRunning {
                    name: name.to_string(),
                    key,
                })?;
        Ok(access[0].pool.parked().map_err(ParkedError::from)?)
    }

    /// Applies a parked event of the active version again.
    pub async fn retry_parked(&self, name: &str, position: u64) -> Result<(), LifecycleError> {
        let key = self.active(name)?;
        let (reply, answer) = oneshot::channel();
        self.send(name, key, Request::RetryParked { position, reply })
            .await?;
        Ok(answer.await.map_err(|_| not_running(name, key))??)
    }

    /// Forgets a parked event of the active version. Returns whether there was one.
    pub async fn drop_parked(&self, name: &str, position: u64) -> Result<bool, LifecycleError> {
        let key = self.active(name)?;
        let (reply, answer) = oneshot::channel();
        self.send(name, key, Request::DropParked { position, reply })
            .await?;
        Ok(answer.await.map_err(|_| not_running(name, key))??)
    }

    fn active(&self, name: &str) -> Result<VersionKey, LifecycleError> {
        self.lock()
            .lifecycle
            .projections
            .get(name)
            .ok_or_else(|| LifecycleError::UnknownProjection(name.to_string()))?
            .active
            .ok_or_else(|| LifecycleError::NoActiveVersion(name.to_string()))
    }

    fn workers_of(&self, name: &str) -> Result<Vec<VersionKey>, LifecycleError> {
        let inner = self.lock();
        if !inner.lifecycle.projections.contains_key(name) {
            return Err(LifecycleError::UnknownProjection(name.to_string()));
        }
        Ok(inner
            .workers
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, key)| *key)
            .collect())
    }

    async fn send(
        &self,
        name: &str,
        key: VersionKey,
        request: Request,
    ) -> Result<(), LifecycleError> {
        let sender = {
            let inner = self.lock();
            let worker = inner
                .workers
                .get(&(name.to_string(), key))
                .ok_or_else(|| not_running(name, key))?;
            worker.requester()
        };
        // A closed channel: the worker stopped (replaced, or shutting down).
        sender
            .send(request)
            .await
            .map_err(|_| not_running(name, key))
    }

    /// Stops every worker after its current batch and waits for them.
    pub async fn shutdown(&self) {
        let stopping: Vec<Worker> = {
            let mut inner = self.lock();
            std::mem::take(&mut inner.workers).into_values().collect()
        };
        for worker in &stopping {
            worker.stop();
        }
        for worker in stopping {
            worker.join().await;
        }
    }
}

fn not_running(name: &str, key: VersionKey) -> LifecycleError {
    LifecycleError::NotRunning {
        name: name.to_string(),
        key,
    }
}
