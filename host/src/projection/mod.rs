//! The projection scheduler: one worker per projection version, turning the log into
//! read models, and the lifecycle that lets versions replace each other without
//! downtime.
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

mod lifecycle;
mod status;
mod worker;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::event_store::EventStore;
use crate::plugin::{Catalog, PluginCode, Plugins, ProjectionHandler, ProjectionMode};
use crate::read_store::{Parked, ReadPool, projection_path, remove_projection_db};

pub use lifecycle::{Cutover, OnFailure, Policy, VersionKey};
pub use status::{ProjectionStatus, State};

use lifecycle::{Lifecycle, LifecycleFile, ProjectionState, VersionRecord};
use worker::{Request, Spec, Worker};

/// A building version within this many events of the head has caught up.
const CUTOVER_LAG: u64 = 16;
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

/// Why a lifecycle request did nothing.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no projection named {0:?}")]
    UnknownProjection(String),
    #[error("projection {name:?} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    /// The active version cannot be retired; promote or roll back first.
    #[error("version {version} of {name:?} is active; promote another version first")]
    ActiveVersion { name: String, version: u32 },
    #[error("projection {0:?} has no previous version to roll back to")]
    NoPrevious(String),
    #[error("{0}")]
    Worker(String),
    #[error("cannot save the projections' lifecycle: {0}")]
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
    workers: BTreeMap<(String, VersionKey), Worker>,
    /// Versions whose worker was stopped for new code and whose replacement has not
    /// started yet, with the replaced worker's deadline (which bounds a command's wait
    /// for the replacement). Readers wait for them as for a worker still opening:
    /// without this, a query in that moment was refused (`projection_unavailable`),
    /// and a command's response did not wait for an inline projection being replaced.
    replacing: BTreeMap<(String, VersionKey), Duration>,
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

    fn state(&mut self, name: &str) -> Result<&mut ProjectionState, LifecycleError> {
        self.lifecycle
            .projections
            .get_mut(name)
            .ok_or_else(|| LifecycleError::UnknownProjection(name.to_string()))
    }
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

    /// Makes the running versions match `catalog`: a new schema version starts
    /// building beside the active one; new code for a known version replaces its
    /// worker (which continues from the checkpoint); every recorded version of a served
    /// projection runs (older ones with their archived code); projections no longer
    /// served stop (their storage and lifecycle stay for a redeploy).
    pub async fn sync(&self, catalog: &Catalog) {
        let mut replaced = Vec::new();
        let mut wanted = Vec::new();
        {
            let mut inner = self.lock();
            let served: HashSet<&str> = catalog.projections().map(|r| r.plugin.as_str()).collect();
            for route in catalog.projections() {
                let state = inner
                    .lifecycle
                    .projections
                    .entry(route.plugin.clone())
                    .or_default();
                let existing = state
                    .latest_generation(route.schema_version)
                    .map(|r| (r.key, r.digest.clone()));
                let retired = state.retired.iter().any(|(version, digest)| {
                    *version == route.schema_version && *digest == route.digest
                });
                match existing {
                    None if retired => {}
                    None => {
                        state
                            .retired
                            .retain(|(version, _)| *version != route.schema_version);
                        let key = VersionKey {
                            version: route.schema_version,
                            generation: 1,
                        };
                        let pending = state.active.is_some();
                        state.versions.push(VersionRecord {
                            key,
                            digest: route.digest.clone(),
                            mode: route.mode,
                            handles: route.handles.iter().cloned().collect(),
                            created_at: jiff::Timestamp::now().to_string(),
                            pending,
                            rebuild_of: None,
                        });
                        if pending {
                            state.held = false;
                            tracing::info!(projection = %route.plugin, version = %key, "building a new version beside the active one");
                        } else {
                            state.active = Some(key);
                        }
                    }
                    Some((key, digest)) if digest != route.digest => {
                        if let Some(record) = state.record_mut(key) {
                            record.digest = route.digest.clone();
                            record.mode = route.mode;
                            record.handles = route.handles.iter().cloned().collect();
                        }
                        let id = (route.plugin.clone(), key);
                        if let Some(worker) = inner.workers.remove(&id) {
                            worker.stop();
                            inner.replacing.insert(id, worker.deadline);
                            replaced.push(worker);
                        }
                    }
                    Some(_) => {}
                }
            }
            let gone: Vec<_> = inner
                .workers
                .keys()
                .filter(|(name, _)| !served.contains(name.as_str()))
                .cloned()
                .collect();
            for key in gone {
                if let Some(worker) = inner.workers.remove(&key) {
                    worker.stop();
                    replaced.push(worker);
                }
            }
            for (name, state) in &inner.lifecycle.projections {
                if !served.contains(name.as_str()) {
                    continue;
                }
                for record in &state.versions {
                    if !inner.workers.contains_key(&(name.clone(), record.key)) {
                        let handler = catalog
                            .projections()
                            .find(|r| r.plugin == *name && r.digest == record.digest)
                            .map(|r| r.handler.clone());
                        wanted.push((name.clone(), record.clone(), handler));
                    }
                }
            }
            self.save(&inner);
        }
        // A replacement must not start before the worker it replaces has ended, or two
        // workers could apply the same events to one database.
        for worker in replaced {
            worker.join().await;
        }
        for (name, record, handler) in wanted {
            let handler = match handler {
                Some(handler) => handler,
                None => match self.archived(&record.digest).await {
                    Ok(handler) => handler,
                    Err(error) => {
                        tracing::error!(projection = %name, version = %record.key, %error, "cannot run this version: its code is unavailable");
                        self.lock().replacing.remove(&(name.clone(), record.key));
                        continue;
                    }
                },
            };
            self.start(&name, &record, handler);
        }
    }

    async fn archived(&self, digest: &str) -> Result<Arc<ProjectionHandler>, String> {
        match self.plugins.load_archived(digest).await?.code {
            PluginCode::Projection(handler) => Ok(handler),
            _ => Err(format!("archived version {digest} is not a projection")),
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

    fn save(&self, inner: &Inner) {
        if let Err(error) = self.file.save(&inner.lifecycle) {
            tracing::error!(%error, "cannot save the projections' lifecycle");
        }
    }

    /// Moves the active pointer to versions that have caught up, until `stop`.
    pub async fn run_lifecycle(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(LIFECYCLE_TICK) => {}
                () = stop.cancelled() => break,
            }
            let retired = self.cut_over();
            for (path, worker) in retired {
                worker.join().await;
                if let Err(error) = remove_projection_db(&path) {
                    tracing::warn!(file = %path.display(), %error, "cannot remove replaced projection storage");
                }
            }
        }
    }

    /// Switches every projection whose building version has caught up (per policy).
    /// Returns the replaced generations of rebuilds, to delete once stopped.
    fn cut_over(&self) -> Vec<(PathBuf, Worker)> {
        let head = *self.store.head().borrow();
        let mut inner = self.lock();
        let mut switches = Vec::new();
        for (name, state) in &inner.lifecycle.projections {
            // Where the version queries read now stands: the one taking over must not be
            // behind it, or queries would lose what they already saw, and an inline
            // projection's acknowledged commands (a `200` promises the next read sees
            // it) with them.
            let active_at = state
                .active
                .and_then(|key| inner.workers.get(&(name.clone(), key)))
                .map(|worker| *worker.checkpoint().borrow());
            for record in state.versions.iter().filter(|r| r.pending) {
                let Some(worker) = inner.workers.get(&(name.clone(), record.key)) else {
                    continue;
                };
                let at = *worker.checkpoint().borrow();
                let caught_up = worker.ready()
                    && at + CUTOVER_LAG >= head
                    && active_at.is_none_or(|active| at >= active)
                    && worker.status.lock().expect("status lock").state != State::Failed;
                let allowed = record.rebuild_of.is_some()
                    || (state.policy.cutover == Cutover::Auto && !state.held);
                if caught_up && allowed {
                    switches.push((name.clone(), record.key, record.rebuild_of));
                }
            }
        }
        let changed = !switches.is_empty();
        let mut retired = Vec::new();
        for (name, key, rebuild_of) in switches {
            let Ok(state) = inner.state(&name) else {
                continue;
            };
            if let Some(record) = state.record_mut(key) {
                record.pending = false;
                record.rebuild_of = None;
            }
            match rebuild_of {
                Some(old) => {
                    state.active = Some(key);
                    state.versions.retain(|r| r.key != old);
                    if state.previous == Some(old) {
                        state.previous = None;
                    }
                    if let Some(worker) = inner.workers.remove(&(name.clone(), old)) {
                        worker.stop();
                        retired.push((self.path(&name, old), worker));
                    }
                }
                None => {
                    state.previous = state.active.replace(key);
                }
            }
            tracing::info!(projection = %name, version = %key, "cut over: queries now read this version");
        }
        if changed {
            self.save(&inner);
        }
        retired
    }

    /// Makes `version` (or the version being built) active now.
    pub fn promote(&self, name: &str, version: Option<u32>) -> Result<VersionKey, LifecycleError> {
        let mut inner = self.lock();
        let state = inner.state(name)?;
        let key = match version {
            Some(version) => {
                state
                    .latest_generation(version)
                    .ok_or_else(|| LifecycleError::UnknownVersion {
                        name: name.to_string(),
                        version,
                    })?
                    .key
            }
            None => state
                .versions
                .iter()
                .filter(|r| r.pending)
                .map(|r| r.key)
                .max()
                .ok_or_else(|| {
                    LifecycleError::Worker(format!("{name} has no version being built"))
                })?,
        };
        if state.active != Some(key) {
            state.previous = state.active.replace(key);
        }
        let rebuild_of = state.record_mut(key).and_then(|r| {
            r.pending = false;
            r.rebuild_of.take()
        });
        if let Some(old) = rebuild_of {
            state.versions.retain(|r| r.key != old);
        }
        state.held = true;
        self.save(&inner);
        tracing::info!(projection = %name, version = %key, "promoted");
        Ok(key)
    }

    /// Makes the previously active version active again.
    pub fn rollback(&self, name: &str) -> Result<VersionKey, LifecycleError> {
        let mut inner = self.lock();
        let state = inner.state(name)?;
        let previous = state
            .previous
            .ok_or_else(|| LifecycleError::NoPrevious(name.to_string()))?;
        state.previous = state.active.replace(previous);
        state.held = true;
        self.save(&inner);
        tracing::info!(projection = %name, version = %previous, "rolled back");
        Ok(previous)
    }

    /// Stops a non-active version and deletes its storage.
    pub async fn retire(&self, name: &str, version: u32) -> Result<(), LifecycleError> {
        let stopping = {
            let mut inner = self.lock();
            let state = inner.state(name)?;
            if state.active.is_some_and(|k| k.version == version) {
                return Err(LifecycleError::ActiveVersion {
                    name: name.to_string(),
                    version,
                });
            }
            let keys: Vec<VersionKey> = state
                .versions
                .iter()
                .filter(|r| r.key.version == version)
                .map(|r| r.key)
                .collect();
            if keys.is_empty() {
                return Err(LifecycleError::UnknownVersion {
                    name: name.to_string(),
                    version,
                });
            }
            for record in state.versions.iter().filter(|r| r.key.version == version) {
                state.retired.push((version, record.digest.clone()));
            }
            state.versions.retain(|r| r.key.version != version);
            if state.previous.is_some_and(|k| k.version == version) {
                state.previous = None;
            }
            let stopping: Vec<_> = keys
                .into_iter()
                .map(|key| {
                    (
                        self.path(name, key),
                        inner.workers.remove(&(name.to_string(), key)),
                    )
                })
                .collect();
            self.save(&inner);
            stopping
        };
        for (path, worker) in stopping {
            if let Some(worker) = worker {
                worker.stop();
                worker.join().await;
            }
            remove_projection_db(&path)?;
        }
        tracing::info!(projection = %name, version, "retired");
        Ok(())
    }

    /// Rebuilds the active version into fresh storage beside the live one; it takes
    /// over when it has caught up, and the old storage is deleted.
    pub async fn rebuild(
        &self,
        name: &str,
        catalog: &Catalog,
    ) -> Result<VersionKey, LifecycleError> {
        let record = {
            let mut inner = self.lock();
            let state = inner.state(name)?;
            let active = state
                .active
                .ok_or_else(|| LifecycleError::Worker(format!("{name} has no active version")))?;
            let template = state
                .record(active)
                .cloned()
                .ok_or_else(|| LifecycleError::Worker(format!("{name} lost its active record")))?;
            let generation = state
                .versions
                .iter()
                .filter(|r| r.key.version == active.version)
                .map(|r| r.key.generation)
                .max()
                .unwrap_or(active.generation)
                + 1;
            // A rebuild already under way for this version is replaced by this one.
            state
                .versions
                .retain(|r| !(r.pending && r.rebuild_of == Some(active)));
            let record = VersionRecord {
                key: VersionKey {
                    version: active.version,
                    generation,
                },
                created_at: jiff::Timestamp::now().to_string(),
                pending: true,
                rebuild_of: Some(active),
                ..template
            };
            state.versions.push(record.clone());
            self.save(&inner);
            record
        };
        let handler = match catalog
            .projections()
            .find(|r| r.plugin == name && r.digest == record.digest)
        {
            Some(route) => route.handler.clone(),
            None => self
                .archived(&record.digest)
                .await
                .map_err(LifecycleError::Worker)?,
        };
        remove_projection_db(&self.path(name, record.key))?;
        self.start(name, &record, handler);
        tracing::info!(projection = %name, version = %record.key, "rebuilding");
        Ok(record.key)
    }

    /// Changes a projection's policies.
    pub fn set_policy(&self, name: &str, policy: Policy) -> Result<(), LifecycleError> {
        let mut inner = self.lock();
        inner.state(name)?.policy = policy;
        if let Some(sender) = inner.policies.get(name) {
            sender.send_replace(policy);
        }
        self.save(&inner);
        Ok(())
    }

    pub fn policy(&self, name: &str) -> Result<Policy, LifecycleError> {
        Ok(self.lock().state(name)?.policy)
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
        self.lock().state(name)?;
        let access = self.read_access(&[name.to_string()]).map_err(|_| {
            LifecycleError::Worker(format!("{name} has no readable active version"))
        })?;
        access[0]
            .pool
            .parked()
            .map_err(|e| LifecycleError::Worker(e.to_string()))
    }

    /// Applies a parked event of the active version again.
    pub async fn retry_parked(&self, name: &str, position: u64) -> Result<(), LifecycleError> {
        let key = self.active(name)?;
        let (reply, answer) = oneshot::channel();
        self.send(name, key, Request::RetryParked { position, reply })
            .await?;
        answer
            .await
            .map_err(|_| LifecycleError::Worker("the projection worker stopped".into()))?
            .map_err(LifecycleError::Worker)
    }

    /// Forgets a parked event of the active version. Returns whether there was one.
    pub async fn drop_parked(&self, name: &str, position: u64) -> Result<bool, LifecycleError> {
        let key = self.active(name)?;
        let (reply, answer) = oneshot::channel();
        self.send(name, key, Request::DropParked { position, reply })
            .await?;
        answer
            .await
            .map_err(|_| LifecycleError::Worker("the projection worker stopped".into()))?
            .map_err(LifecycleError::Worker)
    }

    fn active(&self, name: &str) -> Result<VersionKey, LifecycleError> {
        self.lock()
            .state(name)?
            .active
            .ok_or_else(|| LifecycleError::Worker(format!("{name} has no active version")))
    }

    fn workers_of(&self, name: &str) -> Result<Vec<VersionKey>, LifecycleError> {
        let mut inner = self.lock();
        inner.state(name)?;
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
                .ok_or_else(|| LifecycleError::Worker(format!("{name} {key} is not running")))?;
            worker.requester()
        };
        sender
            .send(request)
            .await
            .map_err(|_| LifecycleError::Worker("the projection worker stopped".into()))
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

    /// Every projection version's status.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let head = *self.store.head().borrow();
        let inner = self.lock();
        let mut all = Vec::new();
        for (name, state) in &inner.lifecycle.projections {
            for record in &state.versions {
                let role = if state.active == Some(record.key) {
                    "active"
                } else if record.pending {
                    "building"
                } else {
                    "standby"
                };
                let id = |digest| status::Identity {
                    name,
                    key: record.key,
                    role,
                    mode: record.mode,
                    digest,
                };
                match inner.workers.get(&(name.clone(), record.key)) {
                    Some(worker) => {
                        let status = worker.status.lock().expect("status lock");
                        all.push(ProjectionStatus::new(
                            id(&worker.digest),
                            *worker.checkpoint().borrow(),
                            head,
                            &status,
                        ));
                    }
                    None => {
                        let mut status = status::Status::default();
                        status.state = State::Stopped;
                        all.push(ProjectionStatus::new(id(&record.digest), 0, head, &status));
                    }
                }
            }
        }
        all
    }

    /// Read access to the named projections (`name` for the active version,
    /// `name@N` to pin schema version N), or the first name that has none.
    pub fn read_access(&self, names: &[String]) -> Result<Vec<ReadAccess>, String> {
        let inner = self.lock();
        names
            .iter()
            .map(|wanted| {
                let (name, pinned) = match wanted.split_once('@') {
                    Some((name, version)) => (name, version.parse::<u32>().ok()),
                    None => (wanted.as_str(), None),
                };
                let state = inner
                    .lifecycle
                    .projections
                    .get(name)
                    .ok_or_else(|| wanted.clone())?;
                let key = match pinned {
                    Some(version) => match state.active {
                        Some(active) if active.version == version => Some(active),
                        _ => state
                            .versions
                            .iter()
                            .filter(|r| r.key.version == version && r.rebuild_of.is_none())
                            .map(|r| r.key)
                            .max(),
                    },
                    None => state.active,
                }
                .ok_or_else(|| wanted.clone())?;
                let worker = inner
                    .workers
                    .get(&(name.to_string(), key))
                    .filter(|worker| worker.ready())
                    .ok_or_else(|| wanted.clone())?;
                Ok(ReadAccess {
                    name: wanted.clone(),
                    key,
                    revision: worker.revision(),
                    pool: worker.pool.clone(),
                    checkpoint: worker.checkpoint(),
                })
            })
            .collect()
    }

    /// Whether `name` (or `name@N`) has an active version that is not readable yet:
    /// its database is being opened or set up, or its worker is being replaced by one
    /// running new code.
    pub fn starting(&self, name: &str) -> bool {
        let name = name.split_once('@').map_or(name, |(name, _)| name);
        let inner = self.lock();
        let Some(key) = inner
            .lifecycle
            .projections
            .get(name)
            .and_then(|state| state.active)
        else {
            return false;
        };
        let id = (name.to_string(), key);
        inner.replacing.contains_key(&id)
            || inner.workers.get(&id).is_some_and(|worker| !worker.ready())
    }

    /// Waits until every active inline projection has applied the log up to
    /// `position`, or `timeout` passes. Returns whether they all got there.
    ///
    /// A command never waits longer than about the slowest inline projection's
    /// deadline (one batch's time), and not at all for one that is failing: a broken
    /// or hung inline projection makes responses say `lagging`, not slow.
    pub async fn wait_inline(&self, position: u64, timeout: Duration) -> bool {
        let started = tokio::time::Instant::now();
        // The active versions can change while waiting (a cutover): the answer is only
        // complete once the versions active at the end hold the position too.
        loop {
            // An inline projection whose worker is being replaced by new code has no
            // checkpoint to wait on for a moment; its successor starts from the
            // checkpoint, so wait for it within the same bound rather than answer
            // without it.
            let inline = match self.active_inline() {
                Ok(inline) => inline,
                Err(Replacing(deadline)) => {
                    if tokio::time::Instant::now()
                        >= started + (deadline + INLINE_SLACK).min(timeout)
                    {
                        return false;
                    }
                    tokio::time::sleep(REPLACING_POLL).await;
                    continue;
                }
            };
            if inline
                .iter()
                .any(|v| v.failing && *v.checkpoint.borrow() < position)
            {
                return false;
            }
            let bound = inline
                .iter()
                .map(|v| v.deadline + INLINE_SLACK)
                .max()
                .unwrap_or_default()
                .min(timeout);
            let left = (started + bound).saturating_duration_since(tokio::time::Instant::now());
            let keys: Vec<_> = inline.iter().map(|v| v.key.clone()).collect();
            let checkpoints = inline.into_iter().map(|v| v.checkpoint).collect();
            if !wait_all(checkpoints, position, left).await {
                return false;
            }
            // A replacement begun meanwhile is waited for on the next round.
            if let Ok(now) = self.active_inline()
                && now.into_iter().map(|v| v.key).eq(keys)
            {
                return true;
            }
        }
    }

    /// The active versions of inline projections, with their checkpoints; or, while
    /// the worker of any of them is being replaced by new code, the longest deadline
    /// of those being replaced.
    fn active_inline(&self) -> Result<Vec<InlineVersion>, Replacing> {
        let inner = self.lock();
        let mut versions = Vec::new();
        let mut replacing = None;
        for (name, state) in &inner.lifecycle.projections {
            let Some(key) = state.active else { continue };
            if !state
                .record(key)
                .is_some_and(|r| r.mode == ProjectionMode::Inline)
            {
                continue;
            }
            let id = (name.clone(), key);
            if let Some(deadline) = inner.replacing.get(&id) {
                replacing = replacing.max(Some(*deadline));
            } else if let Some(worker) = inner.workers.get(&id) {
                versions.push(InlineVersion {
                    checkpoint: worker.checkpoint(),
                    failing: worker.failing(),
                    deadline: worker.deadline,
                    key: id,
                });
            }
        }
        match replacing {
            Some(deadline) => Err(Replacing(deadline)),
            None => Ok(versions),
        }
    }
}

/// An active inline version's worker is being replaced; the longest deadline of those
/// that are.
struct Replacing(Duration);

/// What a command waits on beyond an inline projection's deadline: the time for its
/// worker to notice the new events and commit.
const INLINE_SLACK: Duration = Duration::from_millis(250);
/// How often a command looks again for an inline projection's replacement worker.
const REPLACING_POLL: Duration = Duration::from_millis(2);

/// An active inline projection version, as a command's response waits for it.
struct InlineVersion {
    key: (String, VersionKey),
    checkpoint: watch::Receiver<u64>,
    failing: bool,
    deadline: Duration,
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
