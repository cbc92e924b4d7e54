//! `tessera dev` with a Python plugin, end to end: the real binary watches a folder of
//! plugin sources; a Python plugin written there while it runs is built with the
//! Python SDK's build and served, an edit of its `app.py` is served after a rebuild,
//! and an edit that does not build leaves the last good version serving, with the log
//! saying why. The log also shows each compile's start and end with its duration.
//!
//! Every wait is a bounded poll for an outcome: a Python component takes tens of
//! seconds to build and to compile on a loaded machine.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::common::binary::Binary;
use crate::common::{eventually, plugins};

const PLUGIN: &str = "dev-hello";

/// A Python query handler that answers `{"says": says}`. A query handler must read a
/// projection: it declares the bank's `account-balance` (served beside it), which the
/// host brings up to date before asking it.
fn app_py(says: &str) -> String {
    format!(
        r#""""A query handler that says {says}, to see which build serves."""

from tessera_sdk import Params, QueryHandler, query_handler


class DevHello(QueryHandler):
    name = "{PLUGIN}"
    version = "0.1.0"
    reads = ("account-balance",)
    queries = ("{PLUGIN}",)

    def handle(self, name: str, params: Params):
        return {{"says": "{says}"}}


Querier = query_handler(DevHello)
"#
    )
}

/// Waits until the log has more than `before` lines containing `line`: each step of
/// a rebuild (the build, then the host's compile) has its own bounded wait, as each
/// takes tens of seconds on a loaded machine.
async fn wait_logged(dev: &Binary, line: &str, before: usize) {
    eventually(&format!("the log to say {line:?} again"), async || {
        let log = dev.log_text();
        if count(&log, line) > before {
            Ok(())
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    })
    .await;
}

/// Writes `text` as the plugin's `app.py`, then waits for the build, the compile and
/// the query answering `{"says": says}`.
async fn save_and_wait(dev: &Binary, app: &Path, text: &str, says: &str) -> Result<()> {
    let log = dev.log_text();
    let (rebuilt, compiled) = (
        count(&log, "plugin rebuilt"),
        count(&log, "plugin compile finished"),
    );
    std::fs::write(app, text)?;
    wait_logged(dev, "plugin rebuilt", rebuilt).await;
    wait_logged(dev, "plugin compile finished", compiled).await;
    wait_says(dev, says).await;
    Ok(())
}

/// Waits until the query answers `{"says": says}`.
async fn wait_says(dev: &Binary, says: &str) {
    eventually(&format!("{PLUGIN} to say {says}"), async || {
        let (status, body) = dev
            .get(&format!("/queries/{PLUGIN}"))
            .await
            .map_err(|e| format!("{e:#}"))?;
        match (status, body["says"].as_str()) {
            (200, Some(said)) if said == says => Ok(()),
            _ => Err(format!("{status} {body}")),
        }
    })
    .await;
}

fn count(log: &str, line: &str) -> usize {
    log.matches(line).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_is_rebuilt_and_served_on_every_save() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("host/ is in the repository")?;
    let python = root.join("target/py-venv/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: the test build makes it (python3 is needed)",
        python.display()
    );
    let dir = tempfile::TempDir::new()?;
    let sources = dir.path().join("sources");
    std::fs::create_dir_all(&sources)?;
    let path = |p: &Path| p.to_str().context("a UTF-8 path").map(str::to_string);
    let (sources_arg, target_arg, python_arg) = (
        path(&sources)?,
        path(&dir.path().join("target"))?,
        path(&python)?,
    );
    let served = dir.path().join("plugins");
    std::fs::create_dir_all(&served)?;
    std::fs::copy(
        plugins::ACCOUNT_BALANCE,
        served.join("account-balance.wasm"),
    )?;
    let dev = Binary::start_as(
        "dev",
        &dir.path().join("data"),
        &served,
        &dir.path().join("dev.log"),
        &[
            "--sources",
            &sources_arg,
            "--target-dir",
            &target_arg,
            "--python",
            &python_arg,
        ],
    )
    .await?;

    // A plugin written while the loop runs is found, built and served.
    let plugin = sources.join(PLUGIN);
    std::fs::create_dir_all(&plugin)?;
    let app = plugin.join("app.py");
    save_and_wait(&dev, &app, &app_py("one"), "one").await?;

    // A save is rebuilt and served.
    save_and_wait(&dev, &app, &app_py("two"), "two").await?;

    // A save that does not build: the log says so, and the last good build serves on.
    let failed_before = count(&dev.log_text(), "plugin build failed");
    std::fs::write(&app, app_py("three") + "\ndef broken(:\n")?;
    wait_logged(&dev, "plugin build failed", failed_before).await;
    let (status, body): (u16, Value) = dev.get(&format!("/queries/{PLUGIN}")).await?;
    assert_eq!(
        (status, body["says"].as_str()),
        (200, Some("two")),
        "{body}"
    );
    let log = dev.log_text();
    assert!(
        log.contains("cannot read"),
        "the build's reason is not in the log:\n{log}"
    );

    // Each compile's start and end is logged, the end with how long it took.
    assert!(count(&log, "plugin compile started") >= 2, "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("plugin compile finished") && line.contains("seconds=")),
        "{log}"
    );
    Ok(())
}
