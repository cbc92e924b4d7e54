//! Builds every crate of the `plugins/` workspace for `wasm32-wasip2` and writes the
//! paths of the resulting components to `$OUT_DIR/plugins.rs`, so that tests load
//! plugins built from the current source, with no step by hand.
//!
//! The nested build has its own target directory (`target/wasm-plugins`, shared with
//! `make plugins`) so it never waits on the lock of the outer build.

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

    let release = target_dir.join("wasm32-wasip2").join(PROFILE);
    let mut constants = String::new();
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
            if !path.is_dir() || path.ends_with("target") {
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
