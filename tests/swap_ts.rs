//! A hot reload of a TypeScript plugin under load: two builds of the TypeScript
//! `bank-account` (plugins/bank-account-ts, the second with a custom section appended,
//! so the host takes it for a new version: the same code under another digest, a full
//! compile, instantiate and switch) are swapped back and forth, by `PUT /plugins`, by a
//! rename into the plugins folder and by overwriting the file in place, while clients
//! keep sending commands. No request may fail, and none may be answered from a state
//! that missed an event: each client deposits on accounts of its own, every answer's
//! stream version must follow the previous one, and the log must hold exactly the
//! accepted deposits, across every swap (a state folded by one version and decided on
//! by the other from a stale cache would show there). Both builds run the same code, so
//! an answer does not say which of them gave it; that every swap took is checked by the
//! digest the host serves.
//!
//! The componentize-js component is 12 MB and compiles for seconds: the swaps land while
//! clients run, which is the point. No assertion is on time: every wait is a bounded
//! poll for an outcome.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera::plugin::PluginLimits;
use tokio::task::JoinSet;

use crate::common::deploy::{bytes, install, overwrite, with_custom_section};
use crate::common::{Api, TestHost, eventually, plugins};

/// How many clients send commands at once.
const CLIENTS: usize = 4;
/// How many swaps, alternately to the second build and back.
const SWAPS: usize = 6;
/// Deposits per account before a client opens another. A swap makes the new version
/// fold each stream from its first event (the cached states belong to the old code),
/// and JavaScript runs interpreted in a component: a stream of a few thousand events
/// takes longer than the 1 s deadline to fold on a loaded machine, which is a matter of
/// stream length (the figure is in docs/plugins/typescript.md), not of the swap.
const DEPOSITS_PER_ACCOUNT: usize = 50;
/// A client stops by then at the latest, whatever happens.
const CLIENT_DEADLINE: Duration = Duration::from_secs(600);

/// The digest the host lists for `file` once it serves it, with no error.
async fn active_digest(host: &TestHost, file: &str) -> String {
    eventually(&format!("{file} to be active"), async || {
        match host.plugin(file).await.map_err(|e| e.to_string())? {
            Some(entry) if entry["status"] == "active" && entry.get("last_error").is_none() => {
                entry["digest"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("no digest in {entry}"))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Waits until the host serves `file` under `digest`.
async fn wait_for_digest(host: &TestHost, file: &str, digest: &str) {
    eventually(&format!("{file} to serve {digest}"), async || {
        let seen = active_digest(host, file).await;
        if seen == digest { Ok(()) } else { Err(seen) }
    })
    .await;
}

/// What one client saw: deposits accepted, and what went wrong.
#[derive(Default)]
struct Tally {
    deposits: u64,
    failures: Vec<String>,
}

/// Deposits 1 on accounts of its own until `stop`; each answer must be a success with
/// one `Deposited {amount: 1}` at the stream version after the previous one. Every
/// [`DEPOSITS_PER_ACCOUNT`] deposits it opens a new account.
async fn client(url: String, name: String, stop: Arc<AtomicBool>) -> Tally {
    let api = Api::of(&reqwest::Client::new(), &url);
    let mut tally = Tally::default();
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut account = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        account += 1;
        let id = format!("{name}-{account}");
        let opened = api
            .send(
                "open-account",
                &json!({"aggregate_id": id, "payload": {"owner": id}}),
                &[],
            )
            .await;
        let mut version = match opened {
            Ok(reply) if reply.status == 200 => reply.body["version"].as_u64().unwrap_or(0),
            Ok(reply) => {
                tally.failures.push(format!(
                    "open-account {id}: {} {}",
                    reply.status, reply.body
                ));
                continue;
            }
            Err(error) => {
                tally
                    .failures
                    .push(format!("open-account {id} not answered: {error}"));
                continue;
            }
        };
        for _ in 0..DEPOSITS_PER_ACCOUNT {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            let body = json!({"aggregate_id": id, "payload": {"amount": 1}});
            match api.send("deposit", &body, &[]).await {
                Ok(reply) if reply.status == 200 => {
                    let events = &reply.body["events"];
                    let answered = reply.body["version"].as_u64();
                    if events.as_array().map(Vec::len) != Some(1)
                        || events[0]["type"] != "Deposited"
                        || events[0]["data"] != json!({"amount": 1})
                    {
                        tally
                            .failures
                            .push(format!("deposit on {id}: unexpected events {}", reply.body));
                    }
                    if answered != Some(version + 1) {
                        tally.failures.push(format!(
                            "deposit on {id}: version {answered:?} after {version}: {}",
                            reply.body
                        ));
                    }
                    version = answered.unwrap_or(version);
                    tally.deposits += 1;
                }
                Ok(reply) => tally.failures.push(format!(
                    "deposit on {id} (stream at version {version}): {} {}",
                    reply.status, reply.body
                )),
                Err(error) => tally
                    .failures
                    .push(format!("deposit on {id} not answered: {error}")),
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_a_typescript_plugin_under_load_fails_no_request() {
    let v1 = plugins::BANK_ACCOUNT_TS;
    assert!(
        Path::new(v1).exists(),
        "{v1} is missing: the TypeScript plugins build with Node 20+ and npm"
    );
    let v1 = bytes(v1);
    let v2 = with_custom_section(&v1, "bank-account-ts v2");
    let host = TestHost::start_files(
        &[
            ("bank-account.wasm", plugins::BANK_ACCOUNT_TS),
            ("account-balance.wasm", plugins::ACCOUNT_BALANCE),
        ],
        |config| {
            // Many commands, no power loss to survive: skip the fsync per commit.
            config.durability = tessera::event_store::Durability::Normal;
            // The 1 s default deadline is sized for Rust plugins. A call on a fresh
            // instance of this 12 MB component (instantiate, then fold in interpreted
            // JavaScript) took longer than that once in ~2,000 commands at a swap, on
            // a 2-core machine shared with other builds: what this test checks is that
            // a swap fails no request, so the plugin gets the deadline an operator
            // would give it (`--plugin-limit bank-account:deadline_ms=5000`).
            config.limits.per_plugin.insert(
                "bank-account".into(),
                PluginLimits {
                    deadline: Some(Duration::from_secs(5)),
                    ..PluginLimits::default()
                },
            );
        },
    )
    .await
    .expect("host starts");
    let v1_digest = active_digest(&host, "bank-account.wasm").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        clients.spawn(client(
            host.url.clone(),
            format!("client-{n}"),
            stop.clone(),
        ));
    }

    // The swapper: alternately the second build and the first, each of the three ways
    // in turn; each swap is waited for until the host serves the new digest.
    let dir = host.plugins_dir();
    let mut v2_digest: Option<String> = None;
    for swap in 0..SWAPS {
        let code = if swap % 2 == 0 { &v2 } else { &v1 };
        match swap % 3 {
            0 => {
                let reply = host
                    .deploy("bank-account", code.clone(), None)
                    .await
                    .expect("deploy sent");
                let entry = reply.ok();
                assert_eq!(entry["status"], "active", "{entry}");
            }
            1 => install(&dir, "bank-account.wasm", code),
            _ => overwrite(&dir, "bank-account.wasm", code),
        }
        if swap % 2 == 0 {
            match &v2_digest {
                Some(digest) => wait_for_digest(&host, "bank-account.wasm", digest).await,
                None => {
                    let digest = eventually("the second build to be served", async || {
                        let seen = active_digest(&host, "bank-account.wasm").await;
                        if seen != v1_digest {
                            Ok(seen)
                        } else {
                            Err(seen)
                        }
                    })
                    .await;
                    v2_digest = Some(digest);
                }
            }
        } else {
            wait_for_digest(&host, "bank-account.wasm", &v1_digest).await;
        }
        // Let the clients call this version for a while.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut deposits = Vec::new();
    let mut failures = Vec::new();
    while let Some(tally) = clients.join_next().await {
        let tally = tally.expect("client task");
        deposits.push(tally.deposits);
        failures.extend(tally.failures);
    }
    assert!(
        failures.is_empty(),
        "{} failed or inconsistent responses, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let total: u64 = deposits.iter().sum();
    assert!(total > 0, "no deposit went through: {deposits:?}");
    eprintln!("TypeScript swap: {SWAPS} swaps, deposits per client {deposits:?}");

    // Every deposit counted once: the log holds exactly the accepted ones.
    let log = host.read_log().await.expect("the log");
    let logged = log
        .iter()
        .filter(|event| event["type"] == "Deposited")
        .count() as u64;
    assert_eq!(
        logged, total,
        "the log holds other deposits than those accepted"
    );
    let (status, listing) = host.get("/plugins").await.unwrap();
    assert_eq!(status, 200);
    let files: Vec<&Value> = listing["plugins"].as_array().unwrap().iter().collect();
    assert_eq!(
        files.len(),
        2,
        "a deploy or a swap left a stray plugin: {listing}"
    );
}
