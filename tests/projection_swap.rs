//! New code for a projection deployed while it serves (the same schema version, so
//! its worker is replaced and continues from its checkpoint) swaps in without a gap:
//! no query is refused meanwhile (`503 projection_unavailable`), and a command's
//! `200` without `Tessera-Inline: lagging` still means the inline projection holds the
//! command, so the next query sees it. Found by the soak (`make soak`): both failed
//! for a moment at every such deploy, while the old worker had stopped and its
//! replacement had not started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::TestHost;
use crate::common::crash::{BANK_PLUGIN_NAMES, BANK_PLUGINS};
use crate::common::deploy::{bytes, with_custom_section};
use anyhow::{Result, ensure};
use serde_json::json;

/// Deploys of new code for the inline projection while a client writes and reads.
const DEPLOYS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_projection_code_swaps_in_without_refusing_reads_or_missing_writes() -> Result<()> {
    let files: Vec<(String, &str)> = BANK_PLUGIN_NAMES
        .iter()
        .zip(BANK_PLUGINS)
        .map(|(name, path)| (format!("{name}.wasm"), path))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let host = TestHost::start_files(&files, |_| {}).await?;
    let opened = host
        .command("open-account", "1", json!({ "owner": "ada" }))
        .await?;
    ensure!(opened.status == 200, "{opened:?}");

    // Deploys alternate between two variants, so each is new code.
    let done = Arc::new(AtomicBool::new(false));
    let deployer = {
        let (api, done) = (host.api().clone(), done.clone());
        let code = bytes(crate::common::plugins::ACCOUNT_BALANCE);
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for n in 0..DEPLOYS {
                let variant = with_custom_section(&code, &format!("swap {}", n % 2));
                let reply = api.deploy("account-balance", variant, None).await;
                match reply {
                    Ok(reply) if reply.status == 200 => {}
                    other => failures.push(format!("{other:?}")),
                }
            }
            done.store(true, Ordering::Relaxed);
            failures
        })
    };

    let mut missed = Vec::new();
    let mut checked = 0;
    while !done.load(Ordering::Relaxed) {
        let body = json!({ "aggregate_id": "1", "payload": { "amount": 1 } });
        let ack = host.send("deposit", &body, &[]).await?;
        ensure!(ack.status == 200, "deposit: {} {}", ack.status, ack.body);
        if ack.header("tessera-inline") == Some("lagging") {
            continue;
        }
        let version = ack.body["version"].as_u64();
        let read = host.query("account", "id=1", &[]).await?;
        checked += 1;
        if read.status != 200 || read.body["version"].as_u64() < version {
            missed.push(format!(
                "acknowledged version {version:?}, then read {} {}",
                read.status, read.body
            ));
        }
    }
    let failures = deployer.await?;
    ensure!(failures.is_empty(), "deploys failed: {failures:#?}");
    ensure!(
        checked > DEPLOYS,
        "too few reads to mean anything: {checked}"
    );
    ensure!(
        missed.is_empty(),
        "{} of {checked} reads right after a command were refused or missed it: {missed:#?}",
        missed.len()
    );
    Ok(())
}
