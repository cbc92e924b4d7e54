//! Builds every crate of the `plugins/` workspace for `wasm32-wasip2` and writes the
//! paths of the resulting components to `$OUT_DIR/plugins.rs`, so that tests load
//! plugins built from the current source, with no step by hand.
//!
//! The nested build has its own target directory (`target/wasm-plugins`, shared with
//! `make plugins`) so it never waits on the lock of the outer build.
//!
//! The TypeScript plugins ([`TS_PLUGINS`], built with the SDK in `plugins/sdk-ts`) are
//! built with npm into `target/plugins-ts`, the same files `make plugins-ts` writes: the
//! packages are installed with `npm ci` when a lockfile is newer than the install, and
//! a plugin is built again when one of its sources or the SDK's is newer than its
//! component. Without npm the Rust plugins still build (with a warning): only the tests
//! that use a TypeScript plugin fail, and say why.
//!
//! The Python plugins ([`PY_PLUGINS`], built with the SDK in `plugins/sdk-py`) are built
//! with componentize-py into `target/plugins-py`, the same files `make plugins-py`
//! writes: componentize-py is installed from `plugins/sdk-py/requirements.txt` into the
//! virtual environment `target/py-venv`, which is reused while it was made from that very
//! file, and a plugin is built again when one of its sources, the SDK's or `wit/` is
//! newer than its component. Without `python3` the other plugins still build (with a
//! warning): only the tests that use a Python plugin fail, and say why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugins workspace's quick-to-build profile (no LTO): the tests build some
/// thirty plugins, and what they check does not depend on LTO.
const PROFILE: &str = "dev-plugin";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    let target_dir = root.join("target/wasm-plugins");
    for watched in ["plugins", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .args([
            "--workspace",
            "--profile",
            PROFILE,
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and target settings are not the plugins' business.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            build.env_remove(key);
        }
    }
    let status = build.status().expect("cannot run cargo for the plugins");
    assert!(
        status.success(),
        "building the plugins failed; is the target installed? `rustup target add wasm32-wasip2`"
    );

    let ts_out = root.join("target/plugins-ts");
    let mut constants = String::new();
    for name in TS_PLUGINS {
        let file = ts_out.join(format!("{name}.wasm"));
        if let Err(error) = build_ts(&plugins, name, &file) {
            println!("cargo:warning=the TypeScript plugin {name} was not built: {error}");
            let _ = std::fs::remove_file(&file);
        }
        let constant = name.replace('-', "_").to_uppercase();
        constants.push_str(&format!(
            "/// The `{name}` TypeScript plugin, built from `plugins/{name}` with npm \
             (absent if npm was not there).\npub const {constant}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    // The same bank built as componentize-js does by default, importing wasi:http: the
    // host must refuse it and say how to build without it.
    let with_http = ts_out.join("bank-account-ts-with-wasi-http.wasm");
    if let Err(error) = build_ts_with(
        &plugins,
        "bank-account-ts",
        &with_http,
        &["--keep-wasi-http-for-tests"],
    ) {
        println!("cargo:warning=the wasi:http variant of bank-account-ts was not built: {error}");
        let _ = std::fs::remove_file(&with_http);
    }
    constants.push_str(&format!(
        "/// `bank-account-ts` built to import wasi:http, which the host does not offer.\n\
         pub const BANK_ACCOUNT_TS_WITH_WASI_HTTP: &str = {:?};\n",
        with_http.display().to_string()
    ));

    let py_out = root.join("target/plugins-py");
    let venv = root.join("target/py-venv");
    let venv_ready = py_venv(&plugins.join("sdk-py"), &venv);
    for name in PY_PLUGINS {
        let file = py_out.join(format!("{name}.wasm"));
        let built = venv_ready
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|python| build_py(&plugins, name, python, &file));
        if let Err(error) = built {
            println!("cargo:warning=the Python plugin {name} was not built: {error}");
            let _ = std::fs::remove_file(&file);
        }
        let constant = name.replace('-', "_").to_uppercase();
        constants.push_str(&format!(
            "/// The `{name}` Python plugin, built from `plugins/{name}` with componentize-py \
             (absent if python3 was not there).\npub const {constant}: &str = {:?};\n",
            file.display().to_string()
        ));
    }

    let release = target_dir.join("wasm32-wasip2").join(PROFILE);
    for crate_name in members(&plugins) {
        let file = release.join(format!("{}.wasm", crate_name.replace('-', "_")));
        if file.exists() {
            let constant = crate_name.replace('-', "_").to_uppercase();
            constants.push_str(&format!(
                "/// The `{crate_name}` plugin, built from `plugins/`.\npub const {constant}: &str = {:?};\n",
                file.display().to_string()
            ));
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, constants).unwrap();
}

/// The package names of the plugin workspace's members.
fn members(plugins: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![plugins.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() || path.ends_with("target") || path.ends_with("node_modules") {
                continue;
            }
            let manifest = path.join("Cargo.toml");
            match std::fs::read_to_string(&manifest) {
                Ok(text) => {
                    if let Some(name) = text.lines().find_map(|line| {
                        line.strip_prefix("name = \"")
                            .and_then(|rest| rest.strip_suffix('"'))
                    }) {
                        names.push(name.to_string());
                    }
                }
                Err(_) => dirs.push(path),
            }
        }
    }
    names.sort();
    names
}

/// The TypeScript plugins under `plugins/`, each an npm package with a `build` script.
const TS_PLUGINS: &[&str] = &["bank-account-ts", "account-balance-ts", "bank-queries-ts"];

/// Installs what the TypeScript plugin `name` needs and builds it into `out`, unless
/// `out` is newer than every source it is built from.
fn build_ts(plugins: &Path, name: &str, out: &Path) -> Result<(), String> {
    build_ts_with(plugins, name, out, &[])
}

/// [`build_ts`] with extra arguments for the SDK's build command.
fn build_ts_with(plugins: &Path, name: &str, out: &Path, extra: &[&str]) -> Result<(), String> {
    let sdk = plugins.join("sdk-ts");
    let dir = plugins.join(name);
    let sources = [
        sdk.join("src"),
        sdk.join("bin"),
        sdk.join("package-lock.json"),
        dir.join("src"),
        dir.join("package.json"),
        dir.join("package-lock.json"),
        plugins.join("../wit"),
    ];
    let built = modified(out);
    if built.is_some() && sources.iter().all(|source| newest(source) < built) {
        return Ok(());
    }
    for package in [&sdk, &dir] {
        npm_ci(package)?;
    }
    let status = Command::new("npm")
        .args(["run", "--silent", "build", "--", "--out"])
        .arg(out)
        .args(extra)
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("cannot run npm (is Node 20 or later installed?): {e}"))?;
    if !status.success() {
        return Err(format!("`npm run build` in plugins/{name} failed"));
    }
    Ok(())
}

/// `npm ci` in `package`, skipped when the install is newer than the lockfile (npm
/// writes `node_modules/.package-lock.json` last).
fn npm_ci(package: &Path) -> Result<(), String> {
    let installed = modified(&package.join("node_modules/.package-lock.json"));
    if installed.is_some() && modified(&package.join("package-lock.json")) <= installed {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(package)
        .status()
        .map_err(|e| format!("cannot run npm (is Node 20 or later installed?): {e}"))?;
    if !status.success() {
        return Err(format!("`npm ci` in {} failed", package.display()));
    }
    Ok(())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of any file under a folder.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let mut latest = modified(path);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            latest = latest.max(newest(&entry.path()));
        }
    }
    latest
}

/// The Python plugins under `plugins/`, each a folder with an `app.py`.
const PY_PLUGINS: &[&str] = &["bank-account-py", "bank-totals-py", "bank-queries-py"];

/// The virtual environment with componentize-py, made from the SDK's pinned
/// `requirements.txt` unless `venv` already holds a copy of that very file (it is
/// written last, once the install succeeded); returns its Python.
fn py_venv(sdk: &Path, venv: &Path) -> Result<PathBuf, String> {
    let requirements = sdk.join("requirements.txt");
    let pinned = std::fs::read(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.txt");
    if python.exists() && std::fs::read(&stamp).ok().as_deref() == Some(&pinned[..]) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(venv);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .map_err(|e| format!("cannot run python3 (is Python 3.10 or later installed?): {e}"))?;
    if !status.success() {
        return Err(format!("`python3 -m venv {}` failed", venv.display()));
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .map_err(|e| format!("cannot run pip in {}: {e}", venv.display()))?;
    if !status.success() {
        return Err(format!(
            "installing {} into {} failed",
            requirements.display(),
            venv.display()
        ));
    }
    std::fs::write(&stamp, &pinned)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

/// Builds the Python plugin `name` into `out` with the SDK's `tessera-build-py`, unless
/// `out` is newer than every source it is built from.
fn build_py(plugins: &Path, name: &str, python: &Path, out: &Path) -> Result<(), String> {
    let sdk = plugins.join("sdk-py");
    let dir = plugins.join(name);
    let sources = [
        sdk.join("tessera_sdk"),
        sdk.join("bin"),
        sdk.join("requirements.txt"),
        dir.clone(),
        plugins.join("../wit"),
    ];
    let built = modified(out);
    if built.is_some() && sources.iter().all(|source| newest(source) < built) {
        return Ok(());
    }
    let status = Command::new(python)
        .arg(sdk.join("bin/tessera-build-py"))
        .arg(&dir)
        .arg("--out")
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !status.success() {
        return Err(format!("`tessera-build-py plugins/{name}` failed"));
    }
    Ok(())
}
