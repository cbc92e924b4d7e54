//! The development loop behind `tessera dev`: watch the plugin sources, rebuild the
//! plugin that changed, and drop the new `.wasm` into the plugins folder, where the
//! host's own watcher picks it up. A build that fails prints the compiler's output
//! and leaves the old code serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

/// The wasm target plugins build for.
const TARGET: &str = "wasm32-wasip2";
/// The cargo profile of dev builds (defined in the plugins workspace): no LTO, so a
/// rebuild takes seconds.
const PROFILE: &str = "dev-plugin";
/// How long the sources must be quiet before a rebuild starts.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Where the plugin sources are and where built plugins go.
#[derive(Debug, Clone)]
pub struct DevLoop {
    /// The plugins workspace (its `Cargo.toml`), e.g. `plugins/`.
    pub sources: PathBuf,
    /// The host's plugins folder.
    pub plugins_dir: PathBuf,
    /// The cargo target directory for plugin builds.
    pub target_dir: PathBuf,
    /// The plugin crates (directory names under `sources`) to build and serve; empty
    /// for every plugin crate there ([`plugin_crates`]), looked up on every change.
    pub crates: Vec<String>,
}

impl DevLoop {
    /// Builds every plugin once, so the host starts with current code.
    pub fn build_all(&self) -> bool {
        self.build(&self.crates().into_iter().collect())
    }

    /// The crates to build: those named, or else every plugin crate in the sources,
    /// as they are now (a crate `tessera new` just wrote included).
    fn crates(&self) -> Vec<String> {
        if self.crates.is_empty() {
            plugin_crates(&self.sources)
        } else {
            self.crates.clone()
        }
    }

    /// Watches the sources until the process ends, rebuilding what changed.
    pub async fn run(self) -> notify::Result<()> {
        let (changes, mut changed) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        // notify-debouncer-full hands over a batch once its files have been quiet for
        // the debounce period (an editor's save in several writes is one batch).
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
            if let Ok(events) = result {
                let paths = events.into_iter().flat_map(|event| event.event.paths);
                let _ = changes.send(paths.collect());
            }
        })?;
        debouncer.watch(&self.sources, RecursiveMode::Recursive)?;
        let sources = self.sources.canonicalize().unwrap_or(self.sources.clone());
        tracing::info!(sources = %sources.display(), "watching plugin sources");
        // Events also come for files that did not change (a build reading manifests);
        // a file counts as changed only when its modification time moved.
        let mut modified = modification_times(&sources);
        while let Some(mut paths) = changed.recv().await {
            // Batches that piled up during the last build join this one.
            while let Ok(more) = changed.try_recv() {
                paths.extend(more);
            }
            paths.retain(|path| {
                let path = path.canonicalize().unwrap_or(path.clone());
                let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                modified.insert(path, now) != Some(now)
            });
            let crates = self.affected(&sources, &paths);
            if crates.is_empty() {
                continue;
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.build(&crates)).await;
        }
        Ok(())
    }

    /// The plugins to rebuild for changed `paths`: the crate a path lies in, or every
    /// plugin when something shared (the SDK, the workspace manifest, WIT) changed.
    fn affected(&self, sources: &Path, paths: &[PathBuf]) -> BTreeSet<String> {
        let known = self.crates();
        let mut crates = BTreeSet::new();
        for path in paths {
            let path = path.canonicalize().unwrap_or(path.clone());
            let Ok(relative) = path.strip_prefix(sources) else {
                continue;
            };
            let is_source = relative
                .extension()
                .is_some_and(|ext| ext == "rs" || ext == "toml" || ext == "wit");
            if !is_source || relative.starts_with("target") {
                continue;
            }
            match relative.components().next() {
                Some(first) => {
                    let first = first.as_os_str().to_string_lossy().to_string();
                    if known.contains(&first) {
                        crates.insert(first);
                    } else {
                        crates.extend(known.iter().cloned());
                    }
                }
                None => crates.extend(known.iter().cloned()),
            }
        }
        crates
    }

    /// Builds `crates` and copies each `.wasm` into the plugins folder. Returns whether
    /// the build succeeded.
    fn build(&self, crates: &BTreeSet<String>) -> bool {
        let started = Instant::now();
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(self.sources.join("Cargo.toml"))
            .args(["--profile", PROFILE, "--target", TARGET])
            .arg("--target-dir")
            .arg(&self.target_dir);
        for name in crates {
            command.args(["-p", name]);
        }
        let status = match command.status() {
            Ok(status) => status,
            Err(error) => {
                tracing::error!(%error, "cannot run cargo");
                return false;
            }
        };
        if !status.success() {
            tracing::error!("plugin build failed (output above); the running code keeps serving");
            return false;
        }
        let built = self.target_dir.join(TARGET).join(PROFILE);
        for name in crates {
            let from = built.join(format!("{}.wasm", name.replace('-', "_")));
            let to = self.plugins_dir.join(format!("{name}.wasm"));
            let partial = self.plugins_dir.join(format!(".{name}.wasm.partial"));
            let copied = std::fs::create_dir_all(&self.plugins_dir)
                .and_then(|()| std::fs::copy(&from, &partial))
                .and_then(|_| std::fs::rename(&partial, &to));
            if let Err(error) = copied {
                tracing::error!(plugin = %name, %error, "cannot install built plugin");
                return false;
            }
        }
        tracing::info!(
            plugins = ?crates,
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "plugins rebuilt"
        );
        true
    }
}

/// The plugin crates directly under `sources`: each folder whose `Cargo.toml` is a
/// package of the folder's name with a `cdylib` library (a component), so neither the
/// SDK nor the test plugins under `testing/`. Sorted by name.
pub fn plugin_crates(sources: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sources) else {
        return Vec::new();
    };
    let mut crates: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(entry.path().join("Cargo.toml")).ok()?;
            let manifest: toml_edit::DocumentMut = text.parse().ok()?;
            let named = manifest.get("package")?.get("name")?.as_str()? == name;
            let component = manifest
                .get("lib")
                .and_then(|lib| lib.get("crate-type"))
                .and_then(|types| types.as_array())
                .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
            (named && component).then_some(name)
        })
        .collect();
    crates.sort();
    crates
}

/// The modification time of every file under `dir` (not following `target`).
fn modification_times(
    dir: &Path,
) -> std::collections::HashMap<PathBuf, Option<std::time::SystemTime>> {
    let mut times = std::collections::HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Build output and installed packages are not sources: walking a
                // TypeScript plugin's node_modules would cost thousands of files a scan.
                let skipped = ["target", "node_modules", "dist", "__pycache__"]
                    .iter()
                    .any(|name| path.ends_with(name));
                if !skipped {
                    pending.push(path);
                }
            } else {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                times.insert(path, modified);
            }
        }
    }
    times
}
