//! End-to-end tests of deployment: plugins replaced in the plugins folder and over
//! `PUT /plugins/{name}` while clients keep calling them, invalid plugins refused with
//! the old version still serving, compiles in a child process (the binary as compiler,
//! a compiler that refuses, one that fails), the admin guard, removal, rollback, a
//! restart that reuses the compiled code, the folder watcher, and the `tessera` command
//! line.
//!
//! Two builds of one command handler (`test-swap-v1`, `test-swap-v2`, both named
//! `swap`) and of one query handler (`test-swap-query-v1`, `-v2`, both named
//! `swap-query`) stamp every part of their answers with `v1` or `v2`, so each response
//! tells which code answered it, and whether one code answered all of it.
//!
//! No assertion is on time: every wait is a bounded poll for an outcome.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::deploy::{bytes, install, overwrite};
use crate::common::{Api, Reply, TestHost, eventually, plugins};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

const SWAP_V1: &str = plugins::TEST_SWAP_V1;
const SWAP_V2: &str = plugins::TEST_SWAP_V2;
const QUERY_V1: &str = plugins::TEST_SWAP_QUERY_V1;
const QUERY_V2: &str = plugins::TEST_SWAP_QUERY_V2;

/// The admin token of the hosts that have one.
const TOKEN: &str = "correct-horse-battery-staple";

// --- Helpers ---------------------------------------------------------------------

/// The bank plugins `swap-query` reads through: the account command handler and the
/// `account-balance` projection.
const BANK: [(&str, &str); 2] = [
    ("bank-account.wasm", plugins::BANK_ACCOUNT),
    ("account-balance.wasm", plugins::ACCOUNT_BALANCE),
];

/// A host (no admin token) serving `swap` v1, and nothing else.
async fn swap_host() -> TestHost {
    TestHost::start_files(&[("swap.wasm", SWAP_V1)], |_| {})
        .await
        .expect("host starts")
}

/// Sends `swap-ping` to aggregate `id`.
async fn ping(api: &Api, id: &str) -> anyhow::Result<Reply> {
    let body = json!({ "aggregate_id": id, "payload": {} });
    api.send("swap-ping", &body, &[]).await
}

/// `GET /queries/swap-probe`.
async fn probe(api: &Api) -> anyhow::Result<Reply> {
    api.query("swap-probe", "", &[]).await
}

/// The code that answered a `swap-ping`: `Err` unless the reply is a success whose
/// every part comes from one version (the code that decided each event, the code that
/// folded the state decided on) and whose state counted every earlier ping.
fn ping_code(reply: &Reply) -> Result<String, String> {
    let body = &reply.body;
    if reply.status != 200 {
        return Err(format!("swap-ping answered {}: {body}", reply.status));
    }
    let events = body["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let [pinged, answered] = events else {
        return Err(format!("expected two events: {body}"));
    };
    if pinged["type"] != "SwapPinged" || answered["type"] != "SwapAnswered" {
        return Err(format!("unexpected events: {body}"));
    }
    let codes = [
        &pinged["data"]["code"],
        &pinged["data"]["state_code"],
        &answered["data"]["code"],
    ];
    let code = codes[0].as_str().unwrap_or_default();
    if !(code == "v1" || code == "v2") || codes.iter().any(|c| c.as_str() != Some(code)) {
        return Err(format!("a response mixing codes {codes:?}: {body}"));
    }
    // Two events per ping: the ping is the version/2-th, if the state saw them all.
    if pinged["data"]["pings"].as_u64().map(|p| p * 2) != body["version"].as_u64() {
        return Err(format!("the state missed pings: {body}"));
    }
    Ok(code.to_string())
}

/// The code that answered `swap-probe`, under the same rules as [`ping_code`].
fn probe_code(reply: &Reply) -> Result<String, String> {
    let body = &reply.body;
    if reply.status != 200 {
        return Err(format!("swap-probe answered {}: {body}", reply.status));
    }
    let codes = [&body["code"], &body["accounts"]["read_by"]];
    let code = codes[0].as_str().unwrap_or_default();
    if !(code == "v1" || code == "v2") || codes[1].as_str() != Some(code) {
        return Err(format!("an answer mixing codes {codes:?}: {body}"));
    }
    if !body["accounts"]["accounts"].is_u64() || !body["accounts"]["total"].is_u64() {
        return Err(format!("an answer without its read data: {body}"));
    }
    Ok(code.to_string())
}

/// The code `swap` answers with now (on an aggregate of the test's own).
async fn command_code(host: &TestHost) -> Result<String, String> {
    let reply = ping(host, "observer").await.map_err(|e| e.to_string())?;
    ping_code(&reply)
}

/// The code `swap-query` answers with now.
async fn query_code(host: &TestHost) -> Result<String, String> {
    let reply = probe(host).await.map_err(|e| e.to_string())?;
    probe_code(&reply)
}

/// Waits until `swap` answers with `code`; any other answer meanwhile (nothing served
/// yet, the previous version) is waited out.
async fn wait_for_command_code(host: &TestHost, code: &str) {
    eventually(&format!("swap to answer {code}"), async || {
        let seen = command_code(host).await?;
        if seen == code { Ok(()) } else { Err(seen) }
    })
    .await;
}

/// Waits until `swap-query` answers with `code`.
async fn wait_for_query_code(host: &TestHost, code: &str) {
    eventually(&format!("swap-query to answer {code}"), async || {
        let seen = query_code(host).await?;
        if seen == code { Ok(()) } else { Err(seen) }
    })
    .await;
}

/// Asserts that `swap` answers with `code` now.
#[track_caller]
fn assert_code(seen: Result<String, String>, code: &str) {
    assert_eq!(seen.as_deref(), Ok(code));
}

/// The listing entry of `file`, which must be there.
async fn entry_of(host: &TestHost, file: &str) -> Value {
    host.plugin(file)
        .await
        .expect("GET /plugins")
        .unwrap_or_else(|| panic!("{file} is not listed"))
}

/// Waits until the listing entry of `file` satisfies `check`; returns it.
async fn wait_for_entry(
    host: &TestHost,
    file: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("{file} to be {what}"), async || {
        match host.plugin(file).await.map_err(|e| e.to_string())? {
            Some(entry) if check(&entry) => Ok(entry),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The names of the `.wasm` files in a folder, sorted.
fn wasm_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the plugins folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".wasm"))
        .collect();
    names.sort();
    names
}

/// Files the host must refuse, with a part of the reason it must give.
fn bad_plugins() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "not WebAssembly",
            b"\0asm? no: just some text that ends in .wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "a component of another world",
            bytes(plugins::TEST_WRONG_WORLD),
            "implements no Tessera world",
        ),
        (
            "a command handler whose describe traps",
            bytes(plugins::TEST_DESCRIBE_TRAP),
            "describe failed",
        ),
    ]
}

/// Deploys each of [`bad_plugins`] over `swap`: each is refused with its reason, and
/// `v1` still answers after each.
async fn assert_bad_plugins_refused(host: &TestHost) {
    for (what, bad, reason) in bad_plugins() {
        let reply = host.deploy("swap", bad, None).await.expect("deploy sent");
        reply.assert_error(422, "invalid_plugin");
        assert!(
            message(&reply).contains(reason),
            "deploying {what}: the message should say {reason:?}: {}",
            reply.body
        );
        assert_code(command_code(host).await, "v1");
    }
}

/// Deploys `file` as `swap` and waits until its `code` answers.
async fn deploy_swap(host: &TestHost, file: &str, code: &str) {
    let reply = host
        .deploy("swap", bytes(file), None)
        .await
        .expect("deploy sent");
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_for_command_code(host, code).await;
}

/// The message of an error reply.
fn message(reply: &Reply) -> &str {
    reply.body["error"]["message"].as_str().unwrap_or_default()
}

// --- Swapping under load -----------------------------------------------------------

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    commands: [u64; 2],
    queries: [u64; 2],
    failures: Vec<String>,
}

impl Tally {
    fn count(counts: &mut [u64; 2], failures: &mut Vec<String>, seen: Result<String, String>) {
        match seen.as_deref() {
            Ok("v1") => counts[0] += 1,
            Ok(_) => counts[1] += 1,
            Err(failure) => failures.push(failure.to_string()),
        }
    }
}

/// How many clients call the plugins during the storm.
const CLIENTS: usize = 4;
/// How many times the plugins are swapped.
const SWAPS: usize = 20;
/// A client stops by then at the latest, whatever happens.
const CLIENT_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_plugins_under_load_fails_no_request_and_never_mixes_versions() {
    let files = [
        BANK[0],
        BANK[1],
        ("swap.wasm", SWAP_V1),
        ("swap-query.wasm", QUERY_V1),
    ];
    let host = TestHost::start_files(&files, |config| {
        // Many commands, no power loss to survive: skip the fsync per commit.
        config.durability = tessera::event_store::Durability::Normal;
    })
    .await
    .expect("host starts");
    for (id, amount) in [("ada", 5), ("grace", 7)] {
        host.send(
            "open-account",
            &json!({ "aggregate_id": id, "payload": { "owner": id } }),
            &[],
        )
        .await
        .expect("open")
        .ok();
        host.send(
            "deposit",
            &json!({ "aggregate_id": id, "payload": { "amount": amount } }),
            &[],
        )
        .await
        .expect("deposit")
        .ok();
    }
    assert_code(command_code(&host).await, "v1");
    assert_code(query_code(&host).await, "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for client_number in 0..CLIENTS {
        let url = host.url.clone();
        let stop = stop.clone();
        clients.spawn(async move {
            // A client of its own, so that each keeps its own connections.
            let api = Api::of(&reqwest::Client::new(), &url);
            let id = format!("client-{client_number}");
            let deadline = Instant::now() + CLIENT_DEADLINE;
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let seen = match ping(&api, &id).await {
                    Ok(reply) => ping_code(&reply),
                    Err(error) => Err(format!("swap-ping not answered: {error}")),
                };
                Tally::count(&mut tally.commands, &mut tally.failures, seen);
                let seen = match probe(&api).await {
                    Ok(reply) => probe_code(&reply),
                    Err(error) => Err(format!("swap-probe not answered: {error}")),
                };
                Tally::count(&mut tally.queries, &mut tally.failures, seen);
            }
            tally
        });
    }

    // The swapper: alternately v2 and v1, by each of the three ways in turn.
    let dir = host.plugins_dir();
    for swap in 0..SWAPS {
        let (code, command, query) = if swap % 2 == 0 {
            ("v2", SWAP_V2, QUERY_V2)
        } else {
            ("v1", SWAP_V1, QUERY_V1)
        };
        match swap % 3 {
            0 => {
                for (name, file) in [("swap", command), ("swap-query", query)] {
                    let reply = host
                        .deploy(name, bytes(file), None)
                        .await
                        .expect("deploy sent");
                    assert_eq!(reply.ok()["status"], "active", "{}", reply.body);
                }
            }
            1 => {
                install(&dir, "swap.wasm", &bytes(command));
                install(&dir, "swap-query.wasm", &bytes(query));
            }
            _ => {
                overwrite(&dir, "swap.wasm", &bytes(command));
                overwrite(&dir, "swap-query.wasm", &bytes(query));
            }
        }
        wait_for_command_code(&host, code).await;
        wait_for_query_code(&host, code).await;
        // Let the clients call this version for a while.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    while let Some(tally) = clients.join_next().await {
        let tally = tally.expect("client task");
        for i in 0..2 {
            total.commands[i] += tally.commands[i];
            total.queries[i] += tally.queries[i];
        }
        total.failures.extend(tally.failures);
    }
    assert!(
        total.failures.is_empty(),
        "{} failed or mixed responses, the first: {:#?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(10)]
    );
    for (what, counts) in [("commands", total.commands), ("queries", total.queries)] {
        assert!(
            counts[0] > 0 && counts[1] > 0,
            "{what}: v1 answered {}, v2 answered {}: both should have",
            counts[0],
            counts[1]
        );
    }
    eprintln!(
        "storm: commands v1/v2 {:?}, queries v1/v2 {:?}",
        total.commands, total.queries
    );
    // Every file ends up serving its content, whatever the host read half-written.
    for file in ["swap.wasm", "swap-query.wasm"] {
        wait_for_entry(&host, file, "active with no error", |entry| {
            entry["status"] == "active" && entry.get("last_error").is_none()
        })
        .await;
    }
    assert_eq!(
        wasm_files(&dir),
        [
            "account-balance.wasm",
            "bank-account.wasm",
            "swap-query.wasm",
            "swap.wasm"
        ],
        "a deploy or a swap left a stray file"
    );
}

// --- Invalid plugins -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_deploys_are_refused_and_the_old_version_keeps_serving() {
    let host = swap_host().await;
    let before = entry_of(&host, "swap.wasm").await;
    assert_eq!(before["status"], "active");

    assert_bad_plugins_refused(&host).await;
    assert_eq!(entry_of(&host, "swap.wasm").await, before);

    // A valid plugin deployed under another plugin's name.
    let reply = host
        .deploy("swap", bytes(QUERY_V2), None)
        .await
        .expect("deploy sent");
    reply.assert_error(422, "invalid_plugin");
    assert!(message(&reply).contains("swap-query"), "{}", reply.body);

    assert_code(command_code(&host).await, "v1");
    assert_eq!(wasm_files(&host.plugins_dir()), ["swap.wasm"]);
    assert_eq!(
        std::fs::read(host.plugins_dir().join("swap.wasm")).expect("swap.wasm"),
        bytes(SWAP_V1),
        "a refused deploy touched the folder"
    );
}

/// With the binary as its compiler, as `tessera serve` runs, every compile happens in a
/// child process (`tessera compile-component`): the folder's plugin and a deployed one
/// serve, and each invalid plugin is refused with the reason an in-process compile
/// gives, the old version still serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_compiler_serves_valid_plugins_and_refuses_invalid_ones_alike() {
    let host = TestHost::start_files(&[("swap.wasm", SWAP_V1)], |config| {
        config.limits.compiler = Some(env!("CARGO_BIN_EXE_tessera").into());
    })
    .await
    .expect("host starts");
    assert_eq!(entry_of(&host, "swap.wasm").await["status"], "active");
    assert_code(command_code(&host).await, "v1");

    assert_bad_plugins_refused(&host).await;

    deploy_swap(&host, SWAP_V2, "v2").await;
    // The child wrote each entry beside its final name and the host moved it there.
    let compiled: Vec<String> = std::fs::read_dir(host.data_dir().join("plugins/compiled"))
        .expect("the compiled cache")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let digest = entry_of(&host, "swap.wasm").await["digest"]
        .as_str()
        .expect("a digest")
        .to_string();
    assert!(
        compiled
            .iter()
            .any(|name| name.starts_with(&digest) && name.ends_with(".cwasm")),
        "no entry for {digest}: {compiled:?}"
    );
    assert!(
        compiled.iter().all(|name| !name.contains("partial")),
        "{compiled:?}"
    );
}

/// The child compiler's verdict is the host's: a compiler that refuses (status 3) has
/// its reason answered, one that fails otherwise (here `false`, status 1) is not a
/// verdict on the plugin, which the host then compiles itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_compiler_refusal_is_answered_and_its_failure_falls_back_to_the_host() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let refusing = dir.path().join("refusing-compiler");
    std::fs::write(
        &refusing,
        "#!/bin/sh\necho 'refused by the test compiler' >&2\nexit 3\n",
    )
    .expect("the script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&refusing, std::fs::Permissions::from_mode(0o755))
            .expect("executable");
    }
    let host = TestHost::start_files(&[], |config| {
        config.limits.compiler = Some(refusing.clone());
    })
    .await
    .expect("host starts");
    let reply = host
        .deploy("swap", bytes(SWAP_V1), None)
        .await
        .expect("deploy sent");
    reply.assert_error(422, "invalid_plugin");
    assert!(
        message(&reply).contains("refused by the test compiler"),
        "{}",
        reply.body
    );

    let host = TestHost::start_files(&[], |config| {
        config.limits.compiler = Some("/bin/false".into());
    })
    .await
    .expect("host starts");
    deploy_swap(&host, SWAP_V1, "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_files_in_the_folder_are_reported_and_the_old_version_keeps_serving() {
    let host = swap_host().await;
    let dir = host.plugins_dir();
    let served = entry_of(&host, "swap.wasm").await;

    // A new file that never loaded: failed, with the reason.
    for (number, (what, bad, reason)) in bad_plugins().into_iter().enumerate() {
        let file = format!("bad-{number}.wasm");
        install(&dir, &file, &bad);
        let entry = wait_for_entry(&host, &file, "failed", |entry| {
            entry["status"] == "failed"
                && entry["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(reason))
        })
        .await;
        assert!(entry.get("plugin").is_none(), "{what}: {entry}");
        assert_code(command_code(&host).await, "v1");
    }

    // The served file replaced by a bad one: stale, the previous code still serving.
    for (number, (what, bad, reason)) in bad_plugins().into_iter().enumerate() {
        if number % 2 == 0 {
            install(&dir, "swap.wasm", &bad);
        } else {
            overwrite(&dir, "swap.wasm", &bad);
        }
        let entry = wait_for_entry(&host, "swap.wasm", "stale", |entry| {
            entry["status"] == "stale"
                && entry["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(reason))
        })
        .await;
        assert_eq!(entry["digest"], served["digest"], "{what}: {entry}");
        assert_eq!(entry["plugin"]["version"], "1.0.0", "{what}: {entry}");
        assert_code(command_code(&host).await, "v1");
    }

    // A good file again: served, the error gone.
    install(&dir, "swap.wasm", &bytes(SWAP_V2));
    wait_for_command_code(&host, "v2").await;
    let entry = entry_of(&host, "swap.wasm").await;
    assert_eq!(entry["status"], "active", "{entry}");
    assert!(entry.get("last_error").is_none(), "{entry}");
    for number in 0..3 {
        assert_eq!(
            entry_of(&host, &format!("bad-{number}.wasm")).await["status"],
            "failed"
        );
    }
}

// --- The admin guard -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_endpoints_need_the_token_when_one_is_configured() {
    let host = TestHost::start_files(&[("swap.wasm", SWAP_V1)], |config| {
        config.admin_token = Some(TOKEN.to_string());
    })
    .await
    .expect("host starts");
    let before = host.plugins().await.expect("listing");

    for token in [None, Some("wrong-token"), Some("")] {
        let reply = host
            .deploy("swap", bytes(SWAP_V2), token)
            .await
            .expect("deploy sent");
        reply.assert_error(401, "unauthorized");
        host.remove("swap", token)
            .await
            .expect("delete sent")
            .assert_error(401, "unauthorized");
        host.rollback("swap", token)
            .await
            .expect("rollback sent")
            .assert_error(401, "unauthorized");
    }
    // The token in another scheme is no token.
    let reply = Reply::read(
        host.client
            .put(format!("{}/plugins/swap", host.url))
            .header("authorization", format!("Basic {TOKEN}"))
            .body(bytes(SWAP_V2))
            .send()
            .await
            .expect("deploy sent"),
    )
    .await
    .expect("reply");
    reply.assert_error(401, "unauthorized");

    // Nothing changed.
    assert_code(command_code(&host).await, "v1");
    assert_eq!(host.plugins().await.expect("listing"), before);
    assert_eq!(wasm_files(&host.plugins_dir()), ["swap.wasm"]);
    assert_eq!(
        std::fs::read(host.plugins_dir().join("swap.wasm")).expect("swap.wasm"),
        bytes(SWAP_V1)
    );

    // With the token: deployed.
    let reply = host
        .deploy("swap", bytes(SWAP_V2), Some(TOKEN))
        .await
        .expect("deploy sent");
    assert_eq!(reply.ok()["plugin"]["version"], "2.0.0", "{}", reply.body);
    assert_code(command_code(&host).await, "v2");
    host.rollback("swap", Some(TOKEN))
        .await
        .expect("rollback sent")
        .ok();
    assert_code(command_code(&host).await, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_token_loopback_clients_may_deploy() {
    // Tests run on loopback, and the host has no token. The plugin is served from a
    // file of another name than the deploy's `swap.wasm`.
    let host = TestHost::start_files(&[("test_swap_v1.wasm", SWAP_V1)], |_| {})
        .await
        .expect("host starts");
    let reply = host
        .deploy("swap", bytes(SWAP_V2), None)
        .await
        .expect("deploy sent");
    let entry = reply.ok();
    assert_eq!(entry["file"], "swap.wasm");
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["plugin"]["name"], "swap");
    assert_eq!(entry["plugin"]["version"], "2.0.0");
    assert_code(command_code(&host).await, "v2");
    // The deploy replaced the file that served the plugin.
    assert_eq!(wasm_files(&host.plugins_dir()), ["swap.wasm"]);
    assert_eq!(host.plugins().await.expect("listing").len(), 1);
}

// --- Removal -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_stops_serving_and_removes_the_file() {
    let host = swap_host().await;
    assert_code(command_code(&host).await, "v1");

    let reply = host.remove("swap", None).await.expect("delete sent");
    assert_eq!(reply.status, 204, "{}", reply.body);

    let reply = ping(&host, "after-delete").await.expect("command sent");
    reply.assert_error(404, "unknown_command");
    assert!(wasm_files(&host.plugins_dir()).is_empty());
    assert!(host.plugins().await.expect("listing").is_empty());

    host.remove("swap", None)
        .await
        .expect("delete sent")
        .assert_error(404, "unknown_plugin");
    host.rollback("swap", None)
        .await
        .expect("rollback sent")
        .assert_error(404, "unknown_plugin");

    // And it can come back.
    host.deploy("swap", bytes(SWAP_V2), None)
        .await
        .expect("deploy sent")
        .ok();
    assert_code(command_code(&host).await, "v2");
}

// --- Rollback ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_serves_the_previous_version_again() {
    let host = TestHost::start_files(&[], |_| {})
        .await
        .expect("host starts");

    host.deploy("swap", bytes(SWAP_V1), None)
        .await
        .expect("deploy sent")
        .ok();
    assert_code(command_code(&host).await, "v1");
    // Only one version so far.
    host.rollback("swap", None)
        .await
        .expect("rollback sent")
        .assert_error(409, "no_previous_version");
    assert_code(command_code(&host).await, "v1");

    host.deploy("swap", bytes(SWAP_V2), None)
        .await
        .expect("deploy sent")
        .ok();
    assert_code(command_code(&host).await, "v2");

    let reply = host.rollback("swap", None).await.expect("rollback sent");
    assert_eq!(reply.ok()["plugin"]["version"], "1.0.0", "{}", reply.body);
    assert_code(command_code(&host).await, "v1");
    assert_eq!(
        std::fs::read(host.plugins_dir().join("swap.wasm")).expect("swap.wasm"),
        bytes(SWAP_V1),
        "the folder holds the version served"
    );

    host.rollback("no-such-plugin", None)
        .await
        .expect("rollback sent")
        .assert_error(404, "unknown_plugin");
}

// --- Restart -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_serves_the_deployed_set_from_the_compiled_cache() {
    let host = TestHost::start_files(&BANK, |_| {})
        .await
        .expect("host starts");
    for (name, file) in [
        ("swap", SWAP_V1),
        ("swap", SWAP_V2),
        ("swap-query", QUERY_V2),
    ] {
        host.deploy(name, bytes(file), None)
            .await
            .expect("deploy sent")
            .ok();
    }
    assert_code(command_code(&host).await, "v2");
    assert_code(query_code(&host).await, "v2");
    let dir = host.plugins_dir();
    assert_eq!(
        wasm_files(&dir),
        [
            "account-balance.wasm",
            "bank-account.wasm",
            "swap-query.wasm",
            "swap.wasm"
        ]
    );
    assert_eq!(
        std::fs::read(dir.join("swap.wasm")).expect("swap"),
        bytes(SWAP_V2)
    );
    let before = host.plugins().await.expect("listing");

    let host = host.restart().await.expect("host restarts");
    assert_code(command_code(&host).await, "v2");
    assert_code(query_code(&host).await, "v2");
    let after = host.plugins().await.expect("listing");
    assert_eq!(after.len(), 4, "{after:#?}");
    for entry in &after {
        assert_eq!(entry["status"], "active", "{entry}");
        assert_eq!(
            entry["compiled_from_cache"], true,
            "compiled again: {entry}"
        );
        let earlier = before
            .iter()
            .find(|e| e["file"] == entry["file"])
            .expect("listed before the restart");
        assert_eq!(entry["digest"], earlier["digest"], "{entry}");
    }

    // The versions served before the restart are still there to roll back to.
    host.rollback("swap", None)
        .await
        .expect("rollback sent")
        .ok();
    assert_code(command_code(&host).await, "v1");
}

// --- The folder watcher --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watcher_serves_new_files_skips_identical_ones_and_drops_removed_ones() {
    let host = TestHost::start_files(&BANK, |_| {})
        .await
        .expect("host starts");
    let dir = host.plugins_dir();
    let swap = dir.join("swap.wasm");

    // A new file, copied in place (not atomically): served after a bounded wait.
    std::fs::copy(SWAP_V1, &swap).expect("copy");
    wait_for_command_code(&host, "v1").await;
    let loaded = entry_of(&host, "swap.wasm").await;
    assert_eq!(loaded["status"], "active");
    assert!(loaded["loaded_at"].is_string(), "{loaded}");

    // The same content again: renamed over it, and touched.
    install(&dir, "swap.wasm", &bytes(SWAP_V1));
    std::fs::File::options()
        .write(true)
        .open(&swap)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()))
        .expect("touch");
    // Another file after those: once it is served, the folder was rescanned since.
    std::fs::copy(QUERY_V1, dir.join("swap-query.wasm")).expect("copy");
    wait_for_query_code(&host, "v1").await;
    let after = entry_of(&host, "swap.wasm").await;
    assert_eq!(
        after["loaded_at"], loaded["loaded_at"],
        "identical content was reloaded"
    );
    assert_eq!(after, loaded);

    // Removed: no longer served.
    std::fs::remove_file(&swap).expect("remove");
    eventually("swap to stop answering", async || {
        let reply = ping(&host, "after-removal")
            .await
            .map_err(|e| e.to_string())?;
        if reply.status == 404 && reply.body["error"]["code"] == "unknown_command" {
            Ok(())
        } else {
            Err(format!("{} {}", reply.status, reply.body))
        }
    })
    .await;
    assert!(host.plugin("swap.wasm").await.expect("listing").is_none());
    assert_code(query_code(&host).await, "v1");
}

// --- The command line ----------------------------------------------------------------

/// Runs the real `tessera` binary with `args`; returns its exit status, stdout and
/// stderr.
async fn tessera(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(&args)
            .env_remove("TESSERA_URL")
            .env_remove("TESSERA_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run tessera")
    })
    .await
    .expect("runner");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_deploys_and_lists_plugins() {
    let host = swap_host().await;
    let url = host.url.as_str();

    let (ok, stdout, stderr) = tessera(&["deploy", SWAP_V2, "--url", url, "--name", "swap"]).await;
    assert!(ok, "deploy failed: {stdout}{stderr}");
    let served = entry_of(&host, "swap.wasm").await;
    let digest = served["digest"].as_str().expect("digest");
    assert!(
        stdout.contains(&format!("deployed swap 2.0.0 (digest {digest})")),
        "{stdout}"
    );
    assert_code(command_code(&host).await, "v2");

    let (ok, stdout, stderr) = tessera(&["plugins", "--url", url]).await;
    assert!(ok, "plugins failed: {stdout}{stderr}");
    assert!(stdout.starts_with("NAME"), "{stdout}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("swap "))
        .unwrap_or_else(|| panic!("no line for swap: {stdout}"));
    for part in [
        "command-handler",
        "2.0.0",
        "active",
        &digest[..12],
        "swap.wasm",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }

    // Refused: a failure exit, with the host's reason; v2 still serves.
    let scratch = tempfile::TempDir::new().expect("scratch folder");
    let junk = scratch.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("write junk");
    let junk = junk.to_str().expect("UTF-8 path");
    let (ok, stdout, stderr) = tessera(&["deploy", junk, "--url", url, "--name", "swap"]).await;
    assert!(!ok, "a refused deploy succeeded: {stdout}");
    assert!(
        stderr.contains("deploy refused (422") && stderr.contains("not a valid WebAssembly"),
        "{stderr}"
    );
    assert_code(command_code(&host).await, "v2");

    // Without --name, the name is the file's stem.
    let named = scratch.path().join("swap.wasm");
    std::fs::copy(SWAP_V1, &named).expect("copy");
    let (ok, stdout, stderr) =
        tessera(&["deploy", named.to_str().expect("UTF-8"), "--url", url]).await;
    assert!(ok, "deploy failed: {stdout}{stderr}");
    assert!(stdout.contains("deployed swap 1.0.0"), "{stdout}");
    assert_code(command_code(&host).await, "v1");

    // A host with a token: refused without it, deployed with it.
    let guarded = TestHost::start_files(&[("swap.wasm", SWAP_V1)], |config| {
        config.admin_token = Some(TOKEN.to_string());
    })
    .await
    .expect("host starts");
    let url = guarded.url.as_str();
    let (ok, stdout, stderr) = tessera(&["deploy", SWAP_V2, "--url", url, "--name", "swap"]).await;
    assert!(!ok, "deployed without the token: {stdout}");
    assert!(stderr.contains("deploy refused (401"), "{stderr}");
    assert_code(command_code(&guarded).await, "v1");
    let (ok, stdout, stderr) = tessera(&[
        "deploy", SWAP_V2, "--url", url, "--name", "swap", "--token", TOKEN,
    ])
    .await;
    assert!(ok, "deploy with the token failed: {stdout}{stderr}");
    assert_code(command_code(&guarded).await, "v2");
}

/// `GET /plugins` needs no token, even on a host that has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_listing_is_open_and_describes_each_file() {
    let host = TestHost::start_files(&[("swap.wasm", SWAP_V1)], |config| {
        config.admin_token = Some(TOKEN.to_string());
    })
    .await
    .expect("host starts");
    let reply = host
        .request(Method::GET, "/plugins")
        .await
        .expect("listing");
    let entries = reply.ok()["plugins"].as_array().expect("plugins").clone();
    let [entry] = entries.as_slice() else {
        panic!("one entry expected: {entries:?}");
    };
    assert_eq!(entry["file"], "swap.wasm");
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["plugin"]["name"], "swap");
    assert_eq!(entry["plugin"]["kind"], "command-handler");
    assert_eq!(entry["plugin"]["version"], "1.0.0");
    assert_eq!(entry["plugin"]["handles"], json!(["swap-ping"]));
    assert_eq!(entry["digest"].as_str().map(str::len), Some(64), "{entry}");
    assert_eq!(entry["compiled_from_cache"], false, "{entry}");
    assert!(entry.get("last_error").is_none(), "{entry}");
}

// --- Clashes ---------------------------------------------------------------------------
//
// A deploy must not take a command from another served plugin. Which of two clashing
// files wins is decided by file name order (`Catalog::build`), so both orders are
// tried.

/// Deploys `swap-rival` (which claims `swap-ping`) next to `swap` v1 served from
/// `incumbent`, and asserts the deploy was refused and changed nothing.
async fn assert_rival_refused(incumbent: &str) {
    let host = TestHost::start_files(&[(incumbent, SWAP_V1)], |_| {})
        .await
        .expect("host starts");
    let reply = host
        .deploy("swap-rival", bytes(plugins::TEST_SWAP_RIVAL), None)
        .await
        .expect("deploy sent");
    let listing_now = host.plugins().await.expect("listing");
    assert!(
        matches!(reply.status, 409 | 422),
        "a deploy that takes swap-ping from swap was answered {}: {}; listing: {listing_now:#?}",
        reply.status,
        reply.body
    );
    assert_code(command_code(&host).await, "v1");
    assert_eq!(
        wasm_files(&host.plugins_dir()),
        [incumbent],
        "the refused deploy left its file in the folder; listing: {listing_now:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_claiming_a_served_command_is_refused_when_its_file_sorts_first() {
    // "swap-rival.wasm" sorts before "swap.wasm".
    assert_rival_refused("swap.wasm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_claiming_a_served_command_is_refused_when_its_file_sorts_last() {
    // "a-swap.wasm" sorts before "swap-rival.wasm".
    assert_rival_refused("a-swap.wasm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_plugin_keeps_serving_after_a_restart() {
    let host = swap_host().await;
    overwrite(&host.plugins_dir(), "swap.wasm", b"not a component");
    wait_for_entry(&host, "swap.wasm", "stale", |entry| {
        entry["status"] == "stale"
    })
    .await;
    assert_code(command_code(&host).await, "v1");

    let host = host.restart().await.expect("host restarts");
    let after = entry_of(&host, "swap.wasm").await;
    assert_code(command_code(&host).await, "v1");
    assert_eq!(after["status"], "stale", "{after}");
}

// --- Compiles in progress --------------------------------------------------------------

/// A compile in progress is listed: a TypeScript component deployed over HTTP and a
/// Python one dropped into the folder (each tens of MB, compiling for seconds) show as
/// `compiling` with the time they started, while `GET /plugins` keeps answering at
/// once; then both are `active` and the compile is no longer mentioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compile_in_progress_is_listed_until_the_plugin_serves() {
    for plugin in [plugins::BANK_ACCOUNT_TS, plugins::BANK_TOTALS_PY] {
        assert!(
            Path::new(plugin).exists(),
            "{plugin} was not built: see the build's warnings (npm and python3 are needed)"
        );
    }
    let host = TestHost::start(&[]).await.expect("host starts");
    let deploy = {
        let api = Api::of(&host.client, &host.url);
        let bytes = bytes(plugins::BANK_ACCOUNT_TS);
        tokio::spawn(async move { api.deploy("bank-account", bytes, None).await })
    };
    std::fs::copy(
        plugins::BANK_TOTALS_PY,
        host.plugins_dir().join("bank-totals.wasm"),
    )
    .expect("copy into the plugins folder");

    // Each listing must answer within seconds, though a reload is compiling.
    let quick = host.with_timeout(Duration::from_secs(10));
    let mut seen = std::collections::BTreeMap::new();
    eventually("both files to be listed as compiling", async || {
        for entry in quick.plugins().await.map_err(|e| format!("{e:#}"))? {
            if entry["status"] == "compiling" {
                seen.insert(entry["file"].as_str().unwrap_or("").to_string(), entry);
            }
        }
        if seen.len() == 2 {
            Ok(())
        } else {
            Err(format!("compiling so far: {seen:?}"))
        }
    })
    .await;
    for file in ["bank-account.wasm", "bank-totals.wasm"] {
        let entry = &seen[file];
        let since = entry["compiling_since"].as_str().unwrap_or_default();
        assert!(
            since.parse::<jiff::Timestamp>().is_ok(),
            "compiling_since is not a time: {entry}"
        );
        assert!(entry.get("plugin").is_none(), "{entry}");
    }

    let reply = deploy.await.expect("deploy task").expect("deploy answered");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "active", "{}", reply.body);
    for file in ["bank-account.wasm", "bank-totals.wasm"] {
        let entry =
            wait_for_entry(&host, file, "active", |entry| entry["status"] == "active").await;
        assert!(entry.get("compiling_since").is_none(), "{entry}");
    }
    let opened = host
        .command("open-account", "compiled-1", json!({ "owner": "ada" }))
        .await
        .expect("command");
    assert_eq!(opened.status, 200, "{}", opened.body);
}
