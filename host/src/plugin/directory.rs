//! The plugins folder: every `.wasm` in it is loaded, and the served set is swapped
//! atomically once all of them have been tried.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::catalog::{Catalog, LoadFailure};
use super::{Plugin, Runtime};

/// The plugins a host serves: a runtime to load them and the current [`Catalog`].
#[derive(Debug)]
pub struct Plugins {
    runtime: Runtime,
    catalog: ArcSwap<Catalog>,
}

impl Plugins {
    pub fn new(runtime: Runtime) -> Self {
        Plugins {
            runtime,
            catalog: ArcSwap::from_pointee(Catalog::default()),
        }
    }

    /// The current snapshot. A caller keeps using the snapshot it got even if the
    /// plugins change meanwhile.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Loads every `.wasm` file in `dir` and serves exactly those that loaded. A file
    /// that fails is logged with its reason and listed in the catalog's failures; it
    /// never stops the others. Compilation runs on blocking threads.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut loaded = Vec::new();
        let mut failures = Vec::new();
        for file in files {
            match self.load_file(file.clone()).await {
                Ok(plugin) => {
                    tracing::info!(
                        file = %file.display(),
                        plugin = %plugin.description.name,
                        kind = %plugin.description.kind,
                        version = %plugin.description.version,
                        digest = %&plugin.digest[..12],
                        "plugin loaded"
                    );
                    loaded.push((file, plugin));
                }
                Err(error) => {
                    tracing::error!(file = %file.display(), %error, "plugin not loaded");
                    failures.push(LoadFailure { file, error });
                }
            }
        }
        self.catalog
            .store(Arc::new(Catalog::build(loaded, failures)));
        Ok(())
    }

    async fn load_file(&self, file: PathBuf) -> Result<Plugin, String> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&file).map_err(|e| format!("cannot read: {e}"))?;
            runtime.load(&bytes).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("loader failed: {e}"))?
    }
}
