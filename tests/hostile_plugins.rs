//! Hostile plugins: each misbehaviour must cost the request that triggered it and
//! nothing else. A loop is cut at its deadline (504 `deadline_exceeded`), a memory
//! bomb or a trap fails its call (500 `plugin_failed`), a projection that misbehaves
//! fails alone, a plugin whose `describe` traps, loops or lies is not loaded (and says
//! why in `GET /plugins`), malformed outputs are refused, huge outputs are served
//! honestly, and the sandbox denies files, environment and network. After each, the
//! host goes on serving the bank, and the misbehaving plugin its other requests.
//!
//! The plugins are under `plugins/testing/rogue-*`; the hosts run in this process with
//! short deadlines (`tessera::Config.limits`).

use std::time::{Duration, Instant};

use crate::common::deploy::{file_name, listing_entry};
use crate::common::read_side::projection;
use crate::common::{TestHost, fresh_id, plugins, short_limits};
use serde_json::{Value, json};
use tessera::plugin::PluginLimits;
use tokio::task::JoinSet;

/// The deadline of every call in these hosts, unless a test says otherwise.
const DEADLINE: Duration = Duration::from_millis(300);
/// The longest any single request of these tests may take: far past every deadline,
/// so a loop that was not cut shows as a failed request, not a hung test.
const REQUEST_BOUND: Duration = Duration::from_secs(60);

/// The rogue command handler's plugin name, as its `describe` says.
const ROGUE: &str = "test-rogue-commands";

// --- Helpers ---------------------------------------------------------------------

/// A host serving the bank (commands and its inline projection) and the rogue
/// command handler, query handler and projection, with [`DEADLINE`] for every call.
async fn rogue_host() -> TestHost {
    host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::TEST_ROGUE_COMMANDS,
            plugins::TEST_ROGUE_QUERY,
            plugins::TEST_ROGUE_PROJECTION,
        ],
        |config| config.limits = short_limits(DEADLINE),
    )
    .await
}

async fn host_with(plugins: &[&str], configure: impl FnOnce(&mut tessera::Config)) -> TestHost {
    TestHost::start_with(plugins, configure)
        .await
        .expect("host starts")
        .with_request_timeout(REQUEST_BOUND)
}

/// Asserts that the bank still works: a new account opens and takes a deposit, and
/// its stream holds exactly those two events.
async fn assert_bank_serves(host: &TestHost) {
    let id = fresh_id("bank");
    host.command("open-account", &id, json!({"owner": "ada"}))
        .await
        .unwrap()
        .ok();
    let deposit = host
        .command("deposit", &id, json!({"amount": 5}))
        .await
        .unwrap();
    assert_eq!(deposit.ok()["version"], 2, "{}", deposit.body);
    let events = host
        .read_stream(&format!("account-{id}"))
        .await
        .expect("stream");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["AccountOpened", "Deposited"]);
    let (status, health) = host.get("/health").await.expect("health");
    assert_eq!(status, 200, "{health}");
}

/// Asserts that the rogue command handler still serves a command that behaves.
async fn assert_rogue_serves(host: &TestHost) {
    let ping = host
        .command("ping", &fresh_id("ping"), json!({}))
        .await
        .unwrap();
    assert_eq!(ping.ok()["events"][0]["type"], "Pinged");
}

/// Asserts that a stream has no events at all (`GET /streams/{stream}` is 404).
async fn assert_no_stream(host: &TestHost, stream: &str) {
    let reply = host
        .request(reqwest::Method::GET, &format!("/streams/{stream}"))
        .await
        .expect("stream read");
    reply.assert_error(404, "unknown_stream");
}

// --- Endless loops -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_loop_in_handle_is_cut_at_the_deadline_while_others_are_served() {
    let host = rogue_host().await;

    let started = Instant::now();
    let spin = host.command("spin", "spin-1", json!({})).await.unwrap();
    spin.assert_error(504, "deadline_exceeded");
    // The loop never ends by itself: the answer can only come from the deadline.
    assert!(started.elapsed() >= DEADLINE);
    assert_no_stream(&host, "rogue-spin-1").await;

    // Several loops at once, and the bank served while they spin.
    let mut spins = JoinSet::new();
    for n in 0..4 {
        let api = host.api().clone();
        spins.spawn(async move {
            let body = json!({ "aggregate_id": format!("spin-many-{n}"), "payload": {} });
            api.send("spin", &body, &[]).await.expect("spin answered")
        });
    }
    for _ in 0..3 {
        assert_bank_serves(&host).await;
    }
    while let Some(spin) = spins.join_next().await {
        spin.expect("task").assert_error(504, "deadline_exceeded");
    }

    assert_rogue_serves(&host).await;
    assert_bank_serves(&host).await;
}

/// A handler's decisions run on the async workers while they are fast
/// (`command_bus/pace.rs`). One that turns slow once it has earned that is caught by
/// its first slow decision: its next loops, as many as the host has workers and more,
/// go to blocking threads, and the bank is served while they spin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_turns_slow_after_warming_up_no_longer_holds_the_async_workers() {
    let deadline = Duration::from_secs(3);
    let host = host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::TEST_ROGUE_COMMANDS,
        ],
        |config| config.limits = short_limits(deadline),
    )
    .await;
    // Fast decisions: the rogue's own ones now run on the async workers.
    for _ in 0..12 {
        assert_rogue_serves(&host).await;
    }
    let spin = host.command("spin", "turned-1", json!({})).await.unwrap();
    spin.assert_error(504, "deadline_exceeded");

    let mut spins = Vec::new();
    for n in 0..4 {
        let api = host.api().clone();
        spins.push(tokio::spawn(async move {
            let body = json!({ "aggregate_id": format!("turned-many-{n}"), "payload": {} });
            api.send("spin", &body, &[]).await.expect("spin answered")
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_bank_serves(&host).await;
    // Served before any loop was cut: no worker was held by one.
    assert!(
        spins.iter().all(|spin| !spin.is_finished()),
        "the bank was served only after a loop ended"
    );
    for spin in spins {
        spin.await
            .expect("task")
            .assert_error(504, "deadline_exceeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_loop_in_a_query_is_cut_at_the_deadline() {
    let host = rogue_host().await;
    host.wait_live_at_head("account-balance").await;

    let started = Instant::now();
    host.query("rogue-spin", "", &[])
        .await
        .unwrap()
        .assert_error(504, "deadline_exceeded");
    assert!(started.elapsed() >= DEADLINE);

    let ping = host.query("rogue-ping", "", &[]).await.unwrap();
    assert_eq!(ping.ok()["pong"], true);
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_loop_in_a_projection_fails_that_projection_alone() {
    assert_projection_misbehaviour_is_contained("spin", "deadline").await;
}

// --- Memory bombs ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_bomb_in_handle_fails_that_request_alone() {
    let host = rogue_host().await;

    for _ in 0..3 {
        host.command("grow", "grow-1", json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
    }
    assert_no_stream(&host, "rogue-grow-1").await;

    assert_rogue_serves(&host).await;
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_bomb_in_a_query_fails_that_query_alone() {
    let host = rogue_host().await;
    host.wait_live_at_head("account-balance").await;

    host.query("rogue-grow", "", &[])
        .await
        .unwrap()
        .assert_error(500, "plugin_failed");

    assert_eq!(
        host.query("rogue-ping", "", &[]).await.unwrap().ok()["pong"],
        true
    );
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_bomb_in_a_projection_fails_that_projection_alone() {
    assert_projection_misbehaviour_is_contained("grow", "trapped").await;
}

// --- Traps -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trap_in_handle_fails_that_request_and_the_next_is_served() {
    let host = rogue_host().await;

    for trap in ["panic", "overflow", "panic"] {
        let id = fresh_id(trap);
        host.command(trap, &id, json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_no_stream(&host, &format!("rogue-{id}")).await;
        // The very next request, even on the same stream, is served.
        let ping = host.command("ping", &id, json!({})).await.unwrap();
        assert_eq!(ping.ok()["version"], 1);
    }
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trap_in_apply_fails_only_the_stream_that_holds_the_event() {
    let host = rogue_host().await;

    host.command("ping", "armed", json!({})).await.unwrap().ok();
    // `Armed` is appended; folding it traps, so every later command on the stream fails.
    host.command("arm", "armed", json!({})).await.unwrap().ok();
    for _ in 0..3 {
        host.command("ping", "armed", json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
    }
    let events = host.read_stream("rogue-armed").await.expect("stream");
    assert_eq!(
        events.len(),
        2,
        "nothing appended after the trap: {events:?}"
    );

    // Other streams of the same plugin, and other plugins, are served.
    assert_rogue_serves(&host).await;
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trap_in_a_query_fails_that_query_and_the_next_is_served() {
    let host = rogue_host().await;
    host.wait_live_at_head("account-balance").await;

    for _ in 0..3 {
        host.query("rogue-panic", "", &[])
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_eq!(
            host.query("rogue-ping", "", &[]).await.unwrap().ok()["pong"],
            true
        );
    }
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trap_in_a_projection_fails_that_projection_alone() {
    assert_projection_misbehaviour_is_contained("panic", "trapped").await;
}

/// Feeds the rogue projection an honest event and then `what` (`spin`, `grow`,
/// `panic`): the projection must fail at that event with an error mentioning
/// `expected`, while the bank's projection stays live at the head and the bank serves.
async fn assert_projection_misbehaviour_is_contained(what: &str, expected: &str) {
    let host = rogue_host().await;

    let note = host
        .command("feed-projection", "feed", json!({"what": "note"}))
        .await
        .unwrap();
    let note_position = note.ok()["position"].as_u64().expect("position");
    host.wait_projection("test-rogue-projection", "the note applied", |p| {
        p["checkpoint"].as_u64() >= Some(note_position)
    })
    .await;

    let bad = host
        .command("feed-projection", "feed", json!({"what": what}))
        .await
        .unwrap();
    let bad_position = bad.ok()["position"].as_u64().expect("position");
    let failed = host
        .wait_projection(
            "test-rogue-projection",
            &format!("the rogue projection failed at {bad_position}"),
            |p| p["status"] == "failed" && p["failed_at"].as_u64() == Some(bad_position),
        )
        .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(expected), "error {error:?} in {failed}");
    // Its checkpoint never passes the failing event: nothing of it was committed.
    assert!(
        failed["checkpoint"].as_u64() < Some(bad_position),
        "{failed}"
    );

    // Everyone else goes on: the bank's commands and its inline projection.
    assert_bank_serves(&host).await;
    host.wait_live_at_head("account-balance").await;
    assert_rogue_serves(&host).await;
    let list = host.projections().await.expect("list");
    let rogue = projection(&list, "test-rogue-projection").expect("rogue listed");
    assert_ne!(rogue["status"], "live", "{rogue}");
}

// --- Describe: traps, loops and lies -----------------------------------------------

/// The plugins whose `describe` fails or lies, and what `GET /plugins` must say of
/// each.
const REFUSED: [(&str, &str); 6] = [
    (plugins::TEST_ROGUE_DESCRIBE_TRAP, "describe failed"),
    (plugins::TEST_ROGUE_DESCRIBE_SPIN, "deadline"),
    (
        plugins::TEST_ROGUE_DESCRIBE_KIND,
        "describes itself as a projection but implements the command-handler world",
    ),
    (plugins::TEST_ROGUE_DESCRIBE_AGGREGATE, "aggregate type"),
    (plugins::TEST_ROGUE_DESCRIBE_NAME, "name"),
    (plugins::TEST_ROGUE_DESCRIBE_HUGE, "name"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugins_whose_describe_traps_loops_or_lies_are_not_loaded() {
    let mut files = vec![plugins::BANK_ACCOUNT, plugins::ACCOUNT_BALANCE];
    files.extend(REFUSED.iter().map(|(plugin, _)| *plugin));
    let host = host_with(&files, |config| config.limits = short_limits(DEADLINE)).await;

    let listing = host.plugins().await.expect("listing");
    for (plugin, reason) in REFUSED {
        let file = file_name(plugin);
        let entry = listing_entry(&listing, &file)
            .unwrap_or_else(|| panic!("{file} is not listed: {listing:?}"));
        assert_eq!(entry["status"], "failed", "{file}");
        assert!(entry.get("plugin").is_none(), "{file} serves: {entry}");
        let error = entry["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{file}: {reason:?} not in {:?}",
            error.get(..300).unwrap_or(error)
        );
    }
    for served in [plugins::BANK_ACCOUNT, plugins::ACCOUNT_BALANCE] {
        let entry = listing_entry(&listing, &file_name(served)).expect("listed");
        assert_eq!(entry["status"], "active", "{entry}");
    }

    // Nothing the liars claimed is routed.
    for claimed in ["rogue-aggregate-cmd", "rogue-name-cmd", "rogue-huge-cmd"] {
        host.command(claimed, "x", json!({}))
            .await
            .unwrap()
            .assert_error(404, "unknown_command");
    }
    // The one that claimed to be a projection runs as none.
    let list = host.projections().await.expect("list");
    assert!(projection(&list, "test-rogue-describe-kind").is_none());
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_description_is_reported_in_bounded_size() {
    let host = host_with(
        &[plugins::BANK_ACCOUNT, plugins::TEST_ROGUE_DESCRIBE_HUGE],
        |_| {},
    )
    .await;
    let listing = host.plugins().await.expect("listing");
    let entry =
        listing_entry(&listing, &file_name(plugins::TEST_ROGUE_DESCRIBE_HUGE)).expect("listed");
    assert_eq!(entry["status"], "failed");
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        error.len() <= 4096,
        "the listing carries a {} byte error for one plugin",
        error.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_claims_commands_it_does_not_handle_fails_those_requests_alone() {
    let host = host_with(
        &[plugins::BANK_ACCOUNT, plugins::TEST_ROGUE_DESCRIBE_GHOST],
        |config| config.limits = short_limits(DEADLINE),
    )
    .await;

    // The host cannot tell a false claim from its description: the plugin loads...
    let listing = host.plugins().await.expect("listing");
    let entry =
        listing_entry(&listing, &file_name(plugins::TEST_ROGUE_DESCRIBE_GHOST)).expect("listed");
    assert_eq!(entry["status"], "active", "{entry}");
    assert_eq!(
        entry["plugin"]["handles"],
        json!(["ghost-command", "ghost-other"])
    );
    // ...and each claimed command fails when it comes, alone.
    for claimed in ["ghost-command", "ghost-other", "ghost-command"] {
        host.command(claimed, "g1", json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_bank_serves(&host).await;
    }
    assert_no_stream(&host, "rogue-describe-g1").await;
}

// --- Outputs: malformed and huge -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_outputs_are_refused_and_nothing_is_appended() {
    let host = rogue_host().await;
    host.wait_live_at_head("account-balance").await;

    for bad in ["bad-json", "empty-type", "long-type"] {
        let id = fresh_id(bad);
        host.command(bad, &id, json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_no_stream(&host, &format!("rogue-{id}")).await;
    }
    host.query("rogue-bad-json", "", &[])
        .await
        .unwrap()
        .assert_error(500, "plugin_failed");

    assert_rogue_serves(&host).await;
    assert_bank_serves(&host).await;
}

/// A host whose calls may run long enough to produce and hand over tens of MB.
async fn roomy_host() -> TestHost {
    host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::TEST_ROGUE_COMMANDS,
            plugins::TEST_ROGUE_QUERY,
        ],
        |config| config.limits = short_limits(Duration::from_secs(20)),
    )
    .await
}

// The host sets no limit on the size of event data or of a command's event list
// beyond the plugin's memory bound: within it, a huge output is an honest success,
// stored and served whole, and nothing else suffers.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifty_megabyte_event_is_stored_and_served_whole() {
    let host = roomy_host().await;
    const MB: usize = 50;

    let reply = host
        .command("huge-event", "huge", json!({"mb": MB}))
        .await
        .unwrap();
    let body = reply.ok();
    let data = body["events"][0]["data"].as_str().expect("string data");
    assert_eq!(data.len(), MB << 20);
    assert!(data.bytes().all(|b| b == b'x'));

    let events = host.read_stream("rogue-huge").await.expect("stream");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"].as_str().map(str::len), Some(MB << 20));

    // The stream goes on (folding the huge event), and so does everyone else.
    let ping = host.command("ping", "huge", json!({})).await.unwrap();
    assert_eq!(ping.ok()["version"], 2);
    assert_bank_serves(&host).await;
    host.wait_live_at_head("account-balance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_thousand_events_from_one_command_are_appended_as_one() {
    let host = roomy_host().await;
    const COUNT: u64 = 100_000;

    let reply = host
        .command("many-events", "many", json!({"count": COUNT}))
        .await
        .unwrap();
    let body = reply.ok();
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len() as u64, COUNT);
    assert_eq!(body["version"], COUNT);
    let first = events[0]["position"].as_u64().expect("position");
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["position"].as_u64(), Some(first + n as u64));
        assert_eq!(event["data"]["n"].as_u64(), Some(n as u64));
    }
    assert_eq!(body["position"].as_u64(), Some(first + COUNT - 1));
    let head = host.head().await.expect("head");
    assert_eq!(head, first + COUNT - 1);

    assert_bank_serves(&host).await;
    host.wait_live_at_head("account-balance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thirty_megabyte_query_answer_is_served_whole() {
    let host = roomy_host().await;
    host.wait_live_at_head("account-balance").await;
    const MB: usize = 30;

    let reply = host
        .query("rogue-huge", &format!("mb={MB}"), &[])
        .await
        .unwrap();
    let answer = reply.ok().as_str().expect("a JSON string");
    assert_eq!(answer.len(), MB << 20);
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_query_cache_does_not_keep_huge_answers_without_bound() {
    let host = roomy_host().await;
    host.wait_live_at_head("account-balance").await;

    // 20 answers of 30 MB: 600 MB that a byte-bounded cache would not all keep.
    for n in 0..20 {
        let reply = host
            .query("rogue-huge", &format!("mb=30&n={n}"), &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let again = host.query("rogue-huge", "mb=30&n=0", &[]).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(
        again.header("tessera-cache"),
        Some("miss"),
        "the first 30 MB answer is still cached after 600 MB of others"
    );
}

// --- The sandbox -------------------------------------------------------------------

/// Asserts a probe report: every attempt denied (the WASI working directory is a
/// name, not access, so it may be anything), no file content, no environment.
fn assert_all_denied(report: &Value, ports: &[u16]) {
    let attempts = report.as_object().expect("report object");
    for port in ports {
        let key = format!("tcp connect 127.0.0.1:{port}");
        assert!(attempts.contains_key(&key), "{key} not tried: {report}");
    }
    for what in [
        "read /etc/passwd",
        "write /tmp/tessera-escape",
        "env vars",
        "tcp listen 127.0.0.1:0",
        "udp bind 0.0.0.0:0",
        "dns localhost",
    ] {
        assert!(attempts.contains_key(what), "{what} not tried: {report}");
    }
    for (what, outcome) in attempts {
        if what == "current dir" {
            continue;
        }
        let outcome = outcome.as_str().unwrap_or_default();
        assert!(
            outcome.starts_with("denied"),
            "{what} was allowed: {outcome}"
        );
    }
    let text = report.to_string();
    assert!(!text.contains("root:"), "file content leaked: {text}");
    assert!(!text.contains("PATH="), "environment leaked: {text}");
}

/// A listener that must never see a connection from a guest.
fn canary() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

fn assert_no_connection(listener: &std::net::TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a guest reached the canary listener: {other:?}"),
    }
}

fn host_port(host: &TestHost) -> u16 {
    host.url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("port in the host url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_handler_gets_no_files_environment_or_network() {
    let host = rogue_host().await;
    let (listener, canary_port) = canary();
    let escape = std::path::Path::new("/tmp/tessera-escape");
    let escape_existed = escape.exists();
    let ports = [host_port(&host), canary_port];

    let reply = host
        .command("probe", "probe", json!({ "ports": ports }))
        .await
        .unwrap();
    let event = &reply.ok()["events"][0];
    assert_eq!(event["type"], "Probed");
    assert_all_denied(&event["data"]["report"], &ports);
    assert_no_connection(&listener);
    if !escape_existed {
        assert!(!escape.exists(), "a guest wrote {}", escape.display());
    }
    assert_bank_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_handler_gets_no_files_environment_or_network() {
    let host = rogue_host().await;
    host.wait_live_at_head("account-balance").await;
    let (listener, canary_port) = canary();
    let ports = [host_port(&host), canary_port];

    let reply = host
        .query(
            "rogue-probe",
            &format!("ports={},{}", ports[0], ports[1]),
            &[],
        )
        .await
        .unwrap();
    assert_all_denied(reply.ok(), &ports);
    assert_no_connection(&listener);
    assert_bank_serves(&host).await;
}

// --- Per-plugin limits ---------------------------------------------------------------

/// The rogue plugins' own deadline in the per-plugin test: five times the work.
const ROOMY_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_plugin_deadline_lets_one_plugin_run_longer() {
    let slow = json!({"ms": 1000});

    // Under the 300 ms default, a call of a second is cut...
    let strict = rogue_host().await;
    strict.wait_live_at_head("account-balance").await;
    strict
        .command("spin-for", "slow", slow.clone())
        .await
        .unwrap()
        .assert_error(504, "deadline_exceeded");
    strict
        .query("rogue-spin-for", "ms=1000", &[])
        .await
        .unwrap()
        .assert_error(504, "deadline_exceeded");

    // ...and with a longer deadline for the rogue plugins alone, it completes, while
    // their endless loops are still cut (at their own deadline) and the bank keeps
    // the default.
    let roomy = host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::TEST_ROGUE_COMMANDS,
            plugins::TEST_ROGUE_QUERY,
        ],
        |config| {
            config.limits = short_limits(DEADLINE);
            for plugin in [ROGUE, "test-rogue-query"] {
                config.limits.per_plugin.insert(
                    plugin.into(),
                    PluginLimits {
                        deadline: Some(ROOMY_DEADLINE),
                        ..PluginLimits::default()
                    },
                );
            }
        },
    )
    .await;
    let done = roomy.command("spin-for", "slow", slow).await.unwrap();
    assert_eq!(done.ok()["events"][0]["type"], "SpunFor");
    roomy.wait_live_at_head("account-balance").await;
    let answered = roomy.query("rogue-spin-for", "ms=1000", &[]).await.unwrap();
    assert!(answered.ok()["turns"].as_u64().is_some());
    let started = Instant::now();
    roomy
        .command("spin", "endless", json!({}))
        .await
        .unwrap()
        .assert_error(504, "deadline_exceeded");
    assert!(started.elapsed() >= ROOMY_DEADLINE);
    assert_bank_serves(&roomy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_plugin_memory_bound_lets_one_plugin_use_more() {
    for pooling in [true, false] {
        let limits = |config: &mut tessera::Config, roomy: bool| {
            config.limits.max_memory = 32 << 20;
            config.limits.pooling = pooling;
            if roomy {
                config.limits.per_plugin.insert(
                    ROGUE.into(),
                    PluginLimits {
                        max_memory: Some(128 << 20),
                        ..PluginLimits::default()
                    },
                );
            }
        };
        let files = [plugins::BANK_ACCOUNT, plugins::TEST_ROGUE_COMMANDS];

        // 48 MiB is past the 32 MiB default...
        let strict = host_with(&files, |config| limits(config, false)).await;
        strict
            .command("allocate", "big", json!({"mb": 48}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_bank_serves(&strict).await;

        // ...and within the rogue plugin's own 128 MiB, which still stops a bomb.
        let roomy = host_with(&files, |config| limits(config, true)).await;
        let reply = roomy
            .command("allocate", "big", json!({"mb": 48}))
            .await
            .unwrap();
        assert_eq!(
            reply.ok()["events"][0]["data"]["bytes"],
            48 << 20,
            "pooling {pooling}"
        );
        roomy
            .command("grow", "bomb", json!({}))
            .await
            .unwrap()
            .assert_error(500, "plugin_failed");
        assert_bank_serves(&roomy).await;
    }
}
