//! The plugins folder and the served set.
//!
//! [`Plugins::reload`] rescans the folder: a file whose content digest is unchanged is
//! not touched; a new or changed file is compiled and checked off the async runtime;
//! then a new [`Catalog`] is swapped in whole. A file that fails to load leaves the
//! last version that loaded from it in service, with the failure visible in the
//! listing. Requests that already hold a catalog finish on the code they started with.
//!
//! Every catalog change is published ([`Plugins::subscribe`]) so that other parts (the
//! projection scheduler) follow without this module knowing them.
//!
//! A compile that is not answered from the compiled-code cache is listed while it runs
//! (`status: compiling`, or `compiling_since` beside the version still served), and
//! the listing never waits for a reload: it reads the files' last known state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, watch};

use super::catalog::{Catalog, LoadFailure};
use super::compiled_cache::CompiledCache;
use super::compiles::Compiles;
use super::{Description, Plugin, Runtime};

/// The plugins a host serves: a runtime to load them, the files they came from, and
/// the current [`Catalog`].
#[derive(Debug)]
pub struct Plugins {
    runtime: Runtime,
    dir: PathBuf,
    cache: Option<CompiledCache>,
    catalog: ArcSwap<Catalog>,
    published: watch::Sender<Arc<Catalog>>,
    /// Held across a whole reload so two reloads never interleave.
    reloading: Mutex<()>,
    /// Per file: what was last seen and what last loaded. Locked only briefly (never
    /// across a compile), so the listing answers while a reload compiles.
    files: std::sync::Mutex<BTreeMap<PathBuf, FileState>>,
    /// The compiles running now, which the listing shows.
    compiles: Compiles,
    /// Every version that ever loaded, by digest, and per plugin name the digests it
    /// served, oldest first: what rollback goes back to. None: no rollback.
    archive: Option<Archive>,
}

#[derive(Debug)]
struct Archive {
    dir: PathBuf,
    history: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
    /// Per plugin file name, the digest it served last.
    served: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Archive {
    fn open(dir: PathBuf) -> Self {
        let history = std::fs::read(dir.join("history.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let served = std::fs::read(dir.join("served.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Archive {
            dir,
            history: std::sync::Mutex::new(history),
            served: std::sync::Mutex::new(served),
        }
    }

    /// Notes that `file` now serves `digest`.
    fn note_served(&self, file: &Path, digest: &str) -> std::io::Result<()> {
        let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Ok(());
        };
        let mut served = self.served.lock().expect("served lock");
        if served.get(&name).map(String::as_str) != Some(digest) {
            served.insert(name, digest.to_string());
            let json = serde_json::to_vec_pretty(&*served).map_err(std::io::Error::other)?;
            write_atomically(&self.dir.join("served.json"), &json)?;
        }
        Ok(())
    }

    /// The digest `file` served last.
    fn served_by(&self, file: &Path) -> Option<String> {
        let name = file.file_name()?.to_string_lossy().into_owned();
        self.served.lock().expect("served lock").get(&name).cloned()
    }

    /// Keeps `bytes` under their digest and notes that `name` now serves them.
    fn record(&self, name: &str, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let file = self.dir.join(format!("{digest}.wasm"));
        if !file.exists() {
            write_atomically(&file, bytes)?;
        }
        let mut history = self.history.lock().expect("history lock");
        let versions = history.entry(name.to_string()).or_default();
        if versions.last().map(String::as_str) != Some(digest) {
            versions.push(digest.to_string());
            let json = serde_json::to_vec_pretty(&*history).map_err(std::io::Error::other)?;
            write_atomically(&self.dir.join("history.json"), &json)?;
        }
        Ok(())
    }

    /// The bytes of the version `name` served before `current`.
    fn previous(&self, name: &str, current: &str) -> Option<Vec<u8>> {
        let history = self.history.lock().expect("history lock");
        let versions = history.get(name)?;
        let at = versions.iter().rposition(|d| d == current)?;
        let previous = versions[..at].iter().rev().find(|d| *d != current)?;
        std::fs::read(self.dir.join(format!("{previous}.wasm"))).ok()
    }
}

/// Why a deploy, removal or rollback did nothing.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The uploaded bytes are not a plugin this host can serve; the reason says why.
    #[error("{0}")]
    Invalid(String),
    /// The plugin describes itself under another name than the one it was deployed as.
    #[error("the plugin calls itself {actual:?}, not {expected:?}")]
    NameMismatch { expected: String, actual: String },
    /// The plugin claims a command or query another served plugin handles; remove or
    /// change that one first.
    #[error("the plugin clashes with a served one: {0}")]
    Conflict(String),
    /// No plugin of that name is served.
    #[error("no plugin named {0:?} is served")]
    NotFound(String),
    /// Rollback has nothing to go back to.
    #[error("plugin {0:?} has no earlier version to roll back to")]
    NoPreviousVersion(String),
    #[error("plugin folder I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the host knows of one `.wasm` file.
#[derive(Debug, Clone)]
struct FileState {
    /// The digest of the content last read, loaded or not.
    seen_digest: String,
    /// The last version of this file that loaded, still served if a newer one failed.
    loaded: Option<Loaded>,
    /// Why the content last read did not load.
    error: Option<String>,
}

#[derive(Debug, Clone)]
struct Loaded {
    plugin: Plugin,
    loaded_at: String,
    from_cache: bool,
}

/// A plugin file as `GET /plugins` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginListing {
    pub file: String,
    /// `active` (serving the file's content), `stale` (serving an older version because
    /// the file's content failed to load), `failed` (nothing from it serves), or
    /// `compiling` (nothing from it serves yet, and its content is being compiled).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Description>,
    /// The digest of the code being served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// Whether the compiled code came from the host's on-disk cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled_from_cache: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// While new content for this file (a change in the folder, or a deploy) is being
    /// compiled: when that compile started, RFC 3339. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiling_since: Option<String>,
}

impl Plugins {
    /// Serves the plugins of `dir`; compiled code is cached in `cache_dir` if given.
    /// Serves the plugins of `dir`. With a `state_dir`, compiled code is cached there
    /// and every loaded version is archived for rollback.
    pub fn new(runtime: Runtime, dir: PathBuf, state_dir: Option<PathBuf>) -> Self {
        let empty = Arc::new(Catalog::default());
        let cache = state_dir
            .as_ref()
            .map(|state| CompiledCache::new(state.join("compiled"), &runtime));
        let archive = state_dir.map(|state| Archive::open(state.join("archive")));
        Plugins {
            runtime,
            dir,
            cache,
            catalog: ArcSwap::new(empty.clone()),
            published: watch::channel(empty).0,
            reloading: Mutex::new(()),
            files: std::sync::Mutex::new(BTreeMap::new()),
            compiles: Compiles::default(),
            archive,
        }
    }

    /// Checks `bytes` and, if they are plugin `name`, makes them the file that serves
    /// it (replacing any other file that did) and reloads. Nothing changes if the
    /// check fails.
    pub async fn deploy(&self, name: &str, bytes: Vec<u8>) -> Result<(), DeployError> {
        let bytes = Arc::new(bytes);
        let plugin = self
            .check_as(Some(format!("{name}.wasm")), bytes.clone())
            .await
            .map_err(DeployError::Invalid)?;
        if plugin.description.name != name {
            return Err(DeployError::NameMismatch {
                expected: name.to_string(),
                actual: plugin.description.name,
            });
        }
        if let Some(clash) = self.catalog().rival_of(&plugin) {
            return Err(DeployError::Conflict(clash));
        }
        let target = self.dir.join(format!("{name}.wasm"));
        write_atomically(&target, &bytes)?;
        for other in self.files_of(name) {
            if other != target {
                std::fs::remove_file(&other)?;
            }
        }
        self.reload().await?;
        Ok(())
    }

    /// Stops serving plugin `name`: removes its files and reloads.
    pub async fn remove(&self, name: &str) -> Result<(), DeployError> {
        let files = self.files_of(name);
        if files.is_empty() {
            return Err(DeployError::NotFound(name.to_string()));
        }
        for file in files {
            std::fs::remove_file(file)?;
        }
        self.reload().await?;
        Ok(())
    }

    /// Serves again the version of `name` that was served before the current one.
    pub async fn rollback(&self, name: &str) -> Result<(), DeployError> {
        let current = self
            .catalog()
            .plugin(name)
            .map(|p| p.digest.clone())
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let previous = self
            .archive
            .as_ref()
            .and_then(|archive| archive.previous(name, &current))
            .ok_or_else(|| DeployError::NoPreviousVersion(name.to_string()))?;
        self.deploy(name, previous).await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current snapshot. A caller keeps using the snapshot it got even if the
    /// plugins change meanwhile.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Every new catalog, as it is swapped in.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Catalog>> {
        self.published.subscribe()
    }

    /// Loads a version that was served before, by digest, from the archive: how a
    /// projection version keeps running after its plugin file moved on to a newer one.
    pub async fn load_archived(&self, digest: &str) -> Result<Plugin, String> {
        let archive = self
            .archive
            .as_ref()
            .ok_or_else(|| "this host keeps no plugin archive".to_string())?;
        let path = archive.dir.join(format!("{digest}.wasm"));
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("version {digest} is not in the archive: {e}"))?;
        self.check_as(None, Arc::new(bytes)).await
    }

    /// Compiles and checks `bytes` without serving them: what a deploy does first. A
    /// compile is listed under `file` while it runs.
    async fn check_as(&self, file: Option<String>, bytes: Arc<Vec<u8>>) -> Result<Plugin, String> {
        let runtime = self.runtime.clone();
        let cache = self.cache.clone();
        let compiles = self.compiles.clone();
        tokio::task::spawn_blocking(move || {
            let digest = hex::encode(Sha256::digest(&*bytes));
            load(
                &runtime,
                cache.as_ref(),
                &compiles,
                file.as_deref(),
                &bytes,
                digest,
            )
        })
        .await
        .map_err(|e| format!("loader failed: {e}"))?
        .map(|(plugin, _)| plugin)
    }

    /// Rescans the folder and swaps in the resulting catalog. Unchanged files are not
    /// reloaded. Returns the number of files whose content changed.
    pub async fn reload(&self) -> std::io::Result<usize> {
        let _reloading = self.reloading.lock().await;
        let mut present = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
                present.push(path);
            }
        }
        present.sort();
        let removed = {
            let mut files = self.files();
            let known = files.len();
            files.retain(|path, _| present.contains(path));
            known - files.len()
        };
        // Each file is read, hashed and (if its content changed) loaded on a blocking
        // thread, as many at once as there are cores: hashing and deserializing a
        // 10-40 MB component is most of a restart, and files do not depend on each
        // other. Results are taken in file order, so the outcome is the same as one by
        // one.
        let seen: BTreeMap<PathBuf, String> = self
            .files()
            .iter()
            .map(|(path, f)| (path.clone(), f.seen_digest.clone()))
            .collect();
        let parallel = std::thread::available_parallelism().map_or(1, usize::from);
        let mut scans = futures_util::stream::iter(present.into_iter().map(|path| {
            let runtime = self.runtime.clone();
            let cache = self.cache.clone();
            let compiles = self.compiles.clone();
            let seen = seen.get(&path).cloned();
            tokio::task::spawn_blocking(move || {
                scan(&runtime, cache.as_ref(), &compiles, path, seen)
            })
        }))
        .buffered(parallel);
        let mut changed = 0;
        while let Some(scanned) = scans.next().await {
            let Scanned {
                path,
                digest,
                bytes,
                loaded,
            } = match scanned {
                Ok(Some(scanned)) => scanned,
                // Unchanged, or removed between the listing and the read (the next
                // rescan drops it).
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, "plugin loader failed");
                    continue;
                }
            };
            let previous = self
                .files()
                .get(&path)
                .and_then(|known| known.loaded.clone());
            changed += 1;
            let state = match loaded {
                Ok((plugin, from_cache)) => {
                    // New code for a plugin served now, from this file or another.
                    let name = &plugin.description.name;
                    let served = self.catalog().plugin(name).map(|p| p.digest.clone());
                    let reload = served.is_some_and(|served| served != digest);
                    crate::metrics::plugin_loaded(name, true, reload);
                    if let Some(archive) = &self.archive
                        && let Err(error) = archive
                            .record(&plugin.description.name, &digest, &bytes)
                            .and_then(|()| archive.note_served(&path, &digest))
                    {
                        tracing::warn!(%error, "cannot archive plugin version; rollback to it will not be possible");
                    }
                    tracing::info!(
                        file = %path.display(),
                        plugin = %plugin.description.name,
                        kind = %plugin.description.kind,
                        version = %plugin.description.version,
                        digest = %&plugin.digest[..12],
                        compiled = if from_cache { "from cache" } else { "now" },
                        "plugin loaded"
                    );
                    FileState {
                        seen_digest: digest,
                        loaded: Some(Loaded {
                            plugin,
                            loaded_at: jiff::Timestamp::now().to_string(),
                            from_cache,
                        }),
                        error: None,
                    }
                }
                Err(error) => {
                    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                    crate::metrics::plugin_loaded(&stem, false, false);
                    // After a restart nothing from this file is in memory: serve the
                    // version it served last, from the archive, as a running host would.
                    let previous = match previous {
                        Some(previous) => Some(previous),
                        None => self.last_served(&path).await,
                    };
                    tracing::error!(
                        file = %path.display(),
                        %error,
                        still_serving = previous.is_some(),
                        "plugin not loaded"
                    );
                    FileState {
                        seen_digest: digest,
                        loaded: previous,
                        error: Some(error),
                    }
                }
            };
            self.files().insert(path, state);
        }
        // Nothing changed (e.g. the watcher noticing a deploy that already reloaded):
        // keep the catalog, so that nothing downstream reacts to a non-change.
        if changed == 0 && removed == 0 && self.published.borrow().plugins().next().is_some() {
            return Ok(0);
        }
        let files = self.files();
        let loaded = files
            .iter()
            .filter_map(|(path, f)| f.loaded.as_ref().map(|l| (path.clone(), l.plugin.clone())));
        let failures = files
            .iter()
            .filter_map(|(path, f)| {
                f.error.as_ref().map(|error| LoadFailure {
                    file: path.clone(),
                    error: error.clone(),
                })
            })
            .collect();
        let catalog = Arc::new(Catalog::build(loaded, failures, &self.catalog()));
        drop(files);
        self.catalog.store(catalog.clone());
        self.published.send_replace(catalog);
        Ok(changed)
    }

    /// The version `file` served last, loaded from the archive.
    async fn last_served(&self, file: &Path) -> Option<Loaded> {
        let digest = self.archive.as_ref()?.served_by(file)?;
        match self.load_archived(&digest).await {
            Ok(plugin) => Some(Loaded {
                plugin,
                loaded_at: jiff::Timestamp::now().to_string(),
                from_cache: true,
            }),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "the version this file served last cannot be loaded");
                None
            }
        }
    }

    /// Every plugin file with what it serves, and the files whose content is being
    /// compiled. Answers at once, even during a reload.
    pub async fn listing(&self) -> Vec<PluginListing> {
        let catalog = self.catalog();
        // Per file, the oldest compile running for it (RFC 3339 sorts as time does).
        let mut compiling: BTreeMap<String, String> = BTreeMap::new();
        for running in self.compiles.running() {
            if let Some(file) = running.file {
                let since = compiling.entry(file).or_insert(running.since.clone());
                if running.since < *since {
                    *since = running.since;
                }
            }
        }
        let files = self.files();
        let mut listing: Vec<PluginListing> = files
            .iter()
            .map(|(path, state)| {
                let served = state
                    .loaded
                    .as_ref()
                    .filter(|l| catalog.file_of(&l.plugin.description.name) == Some(path));
                let refused = catalog
                    .failures()
                    .iter()
                    .find(|f| f.file == *path)
                    .map(|f| f.error.clone());
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let compiling_since = compiling.remove(&file);
                let status = match (served, &state.error) {
                    (Some(_), None) => "active",
                    (Some(_), Some(_)) => "stale",
                    (None, _) if compiling_since.is_some() => "compiling",
                    (None, _) => "failed",
                };
                PluginListing {
                    file,
                    status,
                    plugin: served.map(|l| l.plugin.description.clone()),
                    digest: served.map(|l| l.plugin.digest.clone()),
                    loaded_at: served.map(|l| l.loaded_at.clone()),
                    compiled_from_cache: served.map(|l| l.from_cache),
                    last_error: state.error.clone().or(refused),
                    compiling_since,
                }
            })
            .collect();
        // New files, and deploys whose file is not written yet: nothing serves from
        // them, they are compiling.
        listing.extend(compiling.into_iter().map(|(file, since)| PluginListing {
            file,
            status: "compiling",
            plugin: None,
            digest: None,
            loaded_at: None,
            compiled_from_cache: None,
            last_error: None,
            compiling_since: Some(since),
        }));
        listing.sort_by(|a, b| a.file.cmp(&b.file));
        listing
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, FileState>> {
        // Every change to the map is a single insert, retain or read, so a panic
        // elsewhere while it was held cannot have left it half changed.
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The files that currently serve plugin `name`.
    pub fn files_of(&self, name: &str) -> Vec<PathBuf> {
        let files = self.files();
        files
            .iter()
            .filter(|(_, f)| {
                f.loaded
                    .as_ref()
                    .is_some_and(|l| l.plugin.description.name == name)
            })
            .map(|(path, _)| path.clone())
            .collect()
    }
}

/// Loads bytes into a plugin, through the compiled-code cache when there is one; a
/// compile (a cache miss) is listed under `file` in `compiles` while it runs.
/// Returns whether the compiled code came from the cache.
/// A file read by [`scan`] whose content is new: its digest, and what loading it gave.
struct Scanned {
    path: PathBuf,
    digest: String,
    bytes: Vec<u8>,
    loaded: Result<(Plugin, bool), String>,
}

/// Reads `path` and loads it unless its digest is `seen` (the content last read). None
/// for unchanged content or a file that could not be read.
fn scan(
    runtime: &Runtime,
    cache: Option<&CompiledCache>,
    compiles: &Compiles,
    path: PathBuf,
    seen: Option<String>,
) -> Option<Scanned> {
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot read plugin file");
            return None;
        }
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if seen.as_deref() == Some(digest.as_str()) {
        return None;
    }
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let loaded = load(
        runtime,
        cache,
        compiles,
        file.as_deref(),
        &bytes,
        digest.clone(),
    );
    Some(Scanned {
        path,
        digest,
        bytes,
        loaded,
    })
}

/// Compiles (or takes from the cache) and checks `bytes`, whose sha256 is `digest`.
/// Returns the plugin and whether its code came from the cache.
fn load(
    runtime: &Runtime,
    cache: Option<&CompiledCache>,
    compiles: &Compiles,
    file: Option<&str>,
    bytes: &[u8],
    digest: String,
) -> Result<(Plugin, bool), String> {
    let (component, from_cache) = match cache.and_then(|cache| cache.cached(&digest)) {
        Some(component) => (component, true),
        None => {
            let mut compiling = compiles.start(file, &digest, bytes.len());
            let compiled = match cache {
                Some(cache) => cache.compile(&digest, bytes),
                None => runtime.compile(bytes),
            }
            .map_err(|e| e.to_string());
            compiling.finished(compiled.as_ref().map(|_| ()).map_err(Clone::clone));
            (compiled?, false)
        }
    };
    runtime
        .load_component(&component, digest)
        .map(|plugin| (plugin, from_cache))
        .map_err(|e| e.to_string())
}

/// Writes beside and renames into place, so a reader never sees a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}
