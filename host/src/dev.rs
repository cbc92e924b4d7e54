//! The development loop behind `tessera dev`: watch the plugin sources, rebuild the
//! plugin that changed, and drop the new `.wasm` into the plugins folder, where the
//! host's own watcher picks it up. A build that fails prints the compiler's output
//! and leaves the old code serving.
//!
//! Three kinds of plugin source are served, each folder directly under the sources:
//! a Rust crate of the plugins workspace (built together by one `cargo build`), a
//! TypeScript plugin (a `package.json` depending on `@tessera/sdk`, built with its
//! `npm run build`) and a Python plugin (an `app.py` importing `tessera_sdk`, built with
//! the SDK's `tessera-build-py`). Builds write beside the target directory and are
//! renamed into the plugins folder, so the host never reads a partial file; the
//! served file is `<folder>.wasm`. A change to a plugin's own sources rebuilds that
//! plugin; a change elsewhere in the sources (an SDK) rebuilds every plugin of that
//! language.

use std::collections::BTreeSet;
use std::fmt;
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
    /// The plugins (folder names under `sources`) to build and serve; empty for every
    /// plugin there ([`plugin_sources`]), looked up on every change.
    pub crates: Vec<String>,
    /// Plugins (folder names) never built nor served, even when `crates` is empty.
    pub skip: Vec<String>,
    /// The Python that runs `tessera-build-py`: the one componentize-py is installed
    /// beside (`target/py-venv/bin/python`, made by `make plugins-py`).
    pub python: PathBuf,
}

/// The language of a plugin's sources, which says how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lang {
    /// A crate of the plugins workspace (`Cargo.toml`, a `cdylib`).
    Rust,
    /// An npm package depending on `@tessera/sdk`.
    TypeScript,
    /// A folder whose `app.py` imports `tessera_sdk`.
    Python,
}

/// A plugin the dev loop builds: its folder under the sources and its language.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PluginSource {
    pub lang: Lang,
    pub name: String,
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl DevLoop {
    /// Builds every plugin once, so the host starts with current code. Returns whether
    /// every build succeeded.
    pub fn build_all(&self) -> bool {
        self.build(&self.plugins().into_iter().collect())
    }

    /// The plugins to build: those named, or else every plugin in the sources, as they
    /// are now (one `tessera new` just wrote included), less those skipped.
    fn plugins(&self) -> Vec<PluginSource> {
        let mut found = plugin_sources(&self.sources);
        if !self.crates.is_empty() {
            found.retain(|plugin| self.crates.contains(&plugin.name));
            // A named crate that is not (yet) a plugin: cargo says why it cannot build.
            for name in &self.crates {
                if !found.iter().any(|plugin| plugin.name == *name) {
                    found.push(PluginSource {
                        lang: Lang::Rust,
                        name: name.clone(),
                    });
                }
            }
        }
        found.retain(|plugin| !self.skip.contains(&plugin.name));
        found
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
            let plugins = self.affected(&sources, &paths);
            if plugins.is_empty() {
                continue;
            }
            // The build reads the sources as they are now: an event that arrives later
            // for a file (or a new folder) unchanged since, such as the writes of one
            // save reported in two batches, must not start another build.
            modified.extend(modification_times(&sources));
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.build(&plugins)).await;
        }
        Ok(())
    }

    /// The plugins to rebuild for changed `paths`: the plugin a path lies in, or
    /// every plugin of the language when something shared changed (an SDK, the
    /// workspace manifest; WIT for all of them). Build output, installed packages and
    /// files no build reads are left out.
    fn affected(&self, sources: &Path, paths: &[PathBuf]) -> BTreeSet<PluginSource> {
        let known = self.plugins();
        let of = |lang: Lang| known.iter().filter(move |p| p.lang == lang).cloned();
        let mut plugins = BTreeSet::new();
        for path in paths {
            let path = path.canonicalize().unwrap_or(path.clone());
            let Ok(relative) = path.strip_prefix(sources) else {
                continue;
            };
            // A plugin's folder itself: it just appeared (its files may have been
            // written before the watch on the new folder was in place).
            if let Some(plugin) = known.iter().find(|p| relative == Path::new(&p.name)) {
                plugins.insert(plugin.clone());
                continue;
            }
            let generated = relative
                .components()
                .any(|part| SKIPPED.iter().any(|skip| part.as_os_str() == *skip));
            let Some(ext) = relative.extension().and_then(|ext| ext.to_str()) else {
                continue;
            };
            if generated {
                continue;
            }
            let lang = match ext {
                "rs" | "toml" => Lang::Rust,
                "ts" | "mts" | "js" | "mjs" | "json" => Lang::TypeScript,
                "py" => Lang::Python,
                "wit" => {
                    plugins.extend(known.iter().cloned());
                    continue;
                }
                _ => continue,
            };
            let first = relative
                .components()
                .next()
                .map(|first| first.as_os_str().to_string_lossy().to_string());
            match known
                .iter()
                .find(|p| Some(&p.name) == first.as_ref() && p.lang == lang)
            {
                Some(plugin) => {
                    plugins.insert(plugin.clone());
                }
                // A file of no plugin of its language: something they share.
                None => plugins.extend(of(lang)),
            }
        }
        plugins
    }

    /// Builds `plugins` (the Rust ones in one cargo build, then each other one) and
    /// copies each `.wasm` into the plugins folder. Returns whether every build
    /// succeeded; one that failed leaves its served file as it was.
    fn build(&self, plugins: &BTreeSet<PluginSource>) -> bool {
        let crates: BTreeSet<String> = plugins
            .iter()
            .filter(|p| p.lang == Lang::Rust)
            .map(|p| p.name.clone())
            .collect();
        let mut ok = crates.is_empty() || self.build_crates(&crates);
        for plugin in plugins.iter().filter(|p| p.lang != Lang::Rust) {
            ok &= self.build_other(plugin);
        }
        ok
    }

    /// Builds a TypeScript or Python plugin with its SDK's build into the target
    /// directory, then installs it.
    fn build_other(&self, plugin: &PluginSource) -> bool {
        let started = Instant::now();
        let folder = self.sources.join(&plugin.name);
        let staged = std::path::absolute(self.target_dir.join("tessera-dev"))
            .unwrap_or_else(|_| self.target_dir.join("tessera-dev"))
            .join(format!("{}.wasm", plugin.name));
        let built = match plugin.lang {
            Lang::TypeScript => npm_build(&folder, &staged),
            _ => self.python_build(&folder, &staged),
        };
        if let Err(error) = built {
            tracing::error!(
                plugin = %plugin,
                %error,
                "plugin build failed (output above); the running code keeps serving"
            );
            return false;
        }
        if !self.install(&plugin.name, &staged) {
            return false;
        }
        tracing::info!(
            plugin = %plugin,
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "plugin rebuilt"
        );
        true
    }

    /// Runs `tessera-build-py` (the sources' `sdk-py`, else the checkout's) on `folder`.
    fn python_build(&self, folder: &Path, out: &Path) -> Result<(), String> {
        let beside = self.sources.join("sdk-py/bin/tessera-build-py");
        let script = if beside.is_file() {
            beside
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk-py/bin/tessera-build-py")
        };
        let status = Command::new(&self.python)
            .arg(&script)
            .arg(folder)
            .arg("--out")
            .arg(out)
            .status()
            .map_err(|error| {
                format!(
                    "cannot run {} (componentize-py's Python; `make plugins-py` makes it, \
                     --python names another): {error}",
                    self.python.display()
                )
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "tessera-build-py {} failed ({status})",
                folder.display()
            ))
        }
    }

    /// Copies a built component into the plugins folder as `<name>.wasm`, by a rename,
    /// so the host never reads it half written.
    fn install(&self, name: &str, from: &Path) -> bool {
        let to = self.plugins_dir.join(format!("{name}.wasm"));
        let partial = self.plugins_dir.join(format!(".{name}.wasm.partial"));
        let copied = std::fs::create_dir_all(&self.plugins_dir)
            .and_then(|()| std::fs::copy(from, &partial))
            .and_then(|_| std::fs::rename(&partial, &to));
        if let Err(error) = copied {
            tracing::error!(plugin = %name, %error, "cannot install built plugin");
            return false;
        }
        true
    }

    /// Builds `crates` and copies each `.wasm` into the plugins folder. Returns whether
    /// the build succeeded.
    fn build_crates(&self, crates: &BTreeSet<String>) -> bool {
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
            if !self.install(name, &from) {
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

/// Folders that hold build output or installed packages, never sources.
const SKIPPED: &[&str] = &[
    "target",
    "node_modules",
    "dist",
    "__pycache__",
    ".tessera-build",
];

/// `npm run build` in a TypeScript plugin's `folder`, writing `out`; first `npm ci`
/// (or `npm install` without a lockfile) when its packages are not installed.
fn npm_build(folder: &Path, out: &Path) -> Result<(), String> {
    let npm = |args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(folder)
            .status()
            .map_err(|error| format!("cannot run npm (Node 20 or later is needed): {error}"))
    };
    if !folder.join("node_modules").is_dir() {
        let install = if folder.join("package-lock.json").is_file() {
            ["ci", "--no-audit", "--no-fund"]
        } else {
            ["install", "--no-audit", "--no-fund"]
        };
        let status = npm(&install)?;
        if !status.success() {
            return Err(format!("npm {} failed ({status})", install[0]));
        }
    }
    let out = out
        .to_str()
        .ok_or("the target directory's path is not UTF-8")?;
    let status = npm(&["run", "--silent", "build", "--", "--out", out])?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm run build failed ({status})"))
    }
}

/// Every plugin directly under `sources`, by folder name: the Rust plugin crates
/// ([`plugin_crates`]), the TypeScript plugins (a `package.json` that depends on
/// `@tessera/sdk` and has a `build` script, so not the SDK itself) and the Python
/// plugins (an `app.py` that imports `tessera_sdk`). Sorted by name.
pub fn plugin_sources(sources: &Path) -> Vec<PluginSource> {
    let mut found: Vec<PluginSource> = plugin_crates(sources)
        .into_iter()
        .map(|name| PluginSource {
            lang: Lang::Rust,
            name,
        })
        .collect();
    let entries = std::fs::read_dir(sources).into_iter().flatten().flatten();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        let folder = entry.path();
        let lang = if is_ts_plugin(&folder) {
            Lang::TypeScript
        } else if std::fs::read_to_string(folder.join("app.py"))
            .is_ok_and(|text| text.contains("tessera_sdk"))
        {
            Lang::Python
        } else {
            continue;
        };
        if !found.iter().any(|p| p.name == name) {
            found.push(PluginSource { lang, name });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Whether `folder` is a TypeScript plugin: its `package.json` depends on
/// `@tessera/sdk` and has a `build` script.
fn is_ts_plugin(folder: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(folder.join("package.json")) else {
        return false;
    };
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let depends = ["dependencies", "devDependencies"]
        .iter()
        .any(|key| manifest[key].get("@tessera/sdk").is_some());
    depends && manifest["scripts"].get("build").is_some()
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

/// The modification time of every file and folder under `dir`, build output and
/// installed packages left out.
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
                let skipped = SKIPPED.iter().any(|name| path.ends_with(name));
                if !skipped {
                    // A folder too: its appearance is an event of its own.
                    let modified = entry.metadata().and_then(|m| m.modified()).ok();
                    times.insert(path.clone(), modified);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// A sources folder like Tessera's `plugins/`: a Rust plugin crate, the SDKs, a
    /// TypeScript and a Python plugin, and folders that are none of them.
    fn sources() -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let root = dir.path();
        write(
            &root.join("tally/Cargo.toml"),
            "[package]\nname = \"tally\"\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n",
        );
        write(&root.join("tally/src/lib.rs"), "");
        write(
            &root.join("sdk-ts/package.json"),
            r#"{"name": "@tessera/sdk", "bin": {"tessera-build": "bin/tessera-build.mjs"}}"#,
        );
        write(&root.join("sdk-ts/src/index.ts"), "");
        write(&root.join("sdk-py/tessera_sdk/__init__.py"), "");
        write(
            &root.join("tally-ts/package.json"),
            r#"{"scripts": {"build": "tessera-build"}, "devDependencies": {"@tessera/sdk": "file:../sdk-ts"}}"#,
        );
        write(&root.join("tally-ts/src/index.ts"), "");
        write(
            &root.join("tally-py/app.py"),
            "from tessera_sdk import projection\n",
        );
        write(&root.join("notes/app.py"), "print('not a plugin')\n");
        write(
            &root.join("web/package.json"),
            r#"{"scripts": {"build": "vite"}}"#,
        );
        dir
    }

    fn dev(sources: &Path) -> DevLoop {
        DevLoop {
            sources: sources.to_path_buf(),
            plugins_dir: sources.join("served"),
            target_dir: sources.join("target"),
            crates: Vec::new(),
            skip: Vec::new(),
            python: PathBuf::from("python3"),
        }
    }

    fn names(plugins: impl IntoIterator<Item = PluginSource>) -> Vec<String> {
        plugins.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn every_kind_of_plugin_source_is_found_and_nothing_else() {
        let dir = sources();
        let found = plugin_sources(dir.path());
        let langs: Vec<(String, Lang)> = found.iter().map(|p| (p.name.clone(), p.lang)).collect();
        assert_eq!(
            langs,
            [
                ("tally".to_string(), Lang::Rust),
                ("tally-py".to_string(), Lang::Python),
                ("tally-ts".to_string(), Lang::TypeScript),
            ]
        );
        let mut skipping = dev(dir.path());
        skipping.skip = vec!["tally-ts".into()];
        assert_eq!(names(skipping.plugins()), ["tally", "tally-py"]);
    }

    #[test]
    fn a_change_rebuilds_its_plugin_or_every_plugin_of_the_language_it_shares() {
        let dir = sources();
        let root = dir.path().canonicalize().expect("canonical");
        let dev = dev(&root);
        let affected = |paths: &[&str]| {
            let paths: Vec<PathBuf> = paths.iter().map(|p| root.join(p)).collect();
            names(dev.affected(&root, &paths))
        };
        assert_eq!(affected(&["tally-ts/src/index.ts"]), ["tally-ts"]);
        assert_eq!(affected(&["tally-py/app.py"]), ["tally-py"]);
        assert_eq!(affected(&["tally/src/lib.rs"]), ["tally"]);
        // A shared source: every plugin of its language.
        assert_eq!(affected(&["sdk-ts/src/index.ts"]), ["tally-ts"]);
        assert_eq!(affected(&["sdk-py/tessera_sdk/__init__.py"]), ["tally-py"]);
        // Build output, installed packages and files no build reads: nothing.
        assert!(affected(&["tally-ts/node_modules/x/index.js"]).is_empty());
        assert!(affected(&["tally-ts/dist/.tessera-build/bundle.js"]).is_empty());
        assert!(affected(&["tally-py/__pycache__/app.cpython-312.py"]).is_empty());
        assert!(affected(&["tally-py/README.md"]).is_empty());
        // A plugin's folder appearing: that plugin.
        assert_eq!(affected(&["tally-py"]), ["tally-py"]);
    }
}
