//! `GET /metrics`: after real traffic (commands accepted and refused, queries served
//! from the cache and not, a projection that parks a failing event, a plugin that
//! traps, one that does not load, one redeployed) every family of the contract is
//! there, parses as the Prometheus text format, carries the labels it should and
//! counts what happened, and no label value is an aggregate id or a stream.
//!
//! The recorder is process-wide, so hosts in one test process share series: the
//! checks are on presence and non-zero values, never on exact counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::common::lifecycle::{wait_caught_up, wait_version};
use crate::common::{TestHost, plugins};
use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::{Value, json};

/// The five plugins beside the bank's four: one that traps on demand and a projection
/// that fails on the owner "poison".
const PLUGINS: [&str; 6] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
    plugins::TEST_TRAP,
    plugins::TEST_POISON_PROJECTION,
];

/// Every family of the contract, with the labels each sample must carry exactly.
const FAMILIES: [(&str, &[&str]); 18] = [
    ("tessera_commands_total", &["command", "outcome"]),
    ("tessera_command_duration_seconds", &["command"]),
    ("tessera_queries_total", &["query", "outcome", "cache"]),
    ("tessera_query_duration_seconds", &["query"]),
    ("tessera_projection_lag_events", &["projection", "version"]),
    ("tessera_projection_lag_seconds", &["projection", "version"]),
    (
        "tessera_projection_events_applied_total",
        &["projection", "version"],
    ),
    (
        "tessera_projection_failures_total",
        &["projection", "version"],
    ),
    (
        "tessera_projection_parked_events",
        &["projection", "version"],
    ),
    (
        "tessera_projection_rebuild_progress_ratio",
        &["projection", "version"],
    ),
    ("tessera_plugin_loads_total", &["plugin", "outcome"]),
    ("tessera_plugin_reloads_total", &["plugin"]),
    ("tessera_plugin_call_failures_total", &["plugin", "kind"]),
    ("tessera_plugin_call_duration_seconds", &["plugin", "call"]),
    ("tessera_group_commit_appends", &[]),
    ("tessera_fsync_duration_seconds", &[]),
    ("tessera_head_position", &[]),
    ("tessera_write_store_bytes", &[]),
];

const COMMAND_OUTCOMES: [&str; 9] = [
    "ok",
    "replayed",
    "invalid",
    "rejected",
    "not_found",
    "conflict",
    "unknown",
    "plugin_error",
    "store_error",
];

/// A sample's count: a counter's or gauge's value, a histogram's observations.
fn count(sample: &Sample) -> f64 {
    match &sample.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        Metric::Histogram(buckets) => buckets
            .iter()
            .filter(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .sum(),
        Metric::Summary(_) => panic!("{} is a summary, not a histogram", sample.metric),
    }
}

/// The samples of `family`.
fn family<'a>(scrape: &'a Scrape, family: &str) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == family)
        .collect()
}

/// The summed count of `family`'s samples whose labels include all of `labels`.
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    family(scrape, name)
        .into_iter()
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(count)
        .sum()
}

async fn command(host: &TestHost, name: &str, id: &str, payload: Value) -> u16 {
    host.send(
        name,
        &json!({ "aggregate_id": id, "payload": payload }),
        &[],
    )
    .await
    .expect("command sent")
    .status
}

async fn scrape(host: &TestHost) -> (String, Scrape) {
    let response = host
        .client
        .get(format!("{}/metrics", host.url))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("body");
    let parsed = Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("parses");
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_family_is_scraped_with_bounded_labels_after_traffic() {
    let dir = Arc::new(tempfile::TempDir::new().expect("temp dir"));
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).expect("plugins folder");
    for plugin in PLUGINS {
        let name = std::path::Path::new(plugin).file_name().expect("file name");
        std::fs::copy(plugin, plugins_dir.join(name)).expect("copy plugin");
    }
    // A file that is no plugin: a failed load.
    std::fs::write(plugins_dir.join("broken.wasm"), b"not wasm").expect("broken plugin");
    let host = TestHost::start_configured(dir, |_| {})
        .await
        .expect("host starts");
    host.wait_live(&["account-balance", "bank-totals", "poison"])
        .await
        .expect("projections live");
    host.set_policy("poison", json!({ "on_failure": "skip", "max_attempts": 1 }))
        .await;

    // Commands, accepted and refused in each way the bank allows.
    let mut ids = BTreeSet::new();
    for n in 0..5 {
        let id = format!("metrics-acct-{n}");
        assert_eq!(
            command(&host, "open-account", &id, json!({ "owner": "ada" })).await,
            200
        );
        assert_eq!(
            command(&host, "deposit", &id, json!({ "amount": 10 })).await,
            200
        );
        ids.insert(id);
    }
    let poisoned = "metrics-poisoned".to_string();
    assert_eq!(
        command(
            &host,
            "open-account",
            &poisoned,
            json!({ "owner": "poison" })
        )
        .await,
        200
    );
    ids.insert(poisoned);
    let first = "metrics-acct-0";
    assert_eq!(
        command(&host, "withdraw", first, json!({ "amount": 1000 })).await,
        422,
        "rejected"
    );
    assert_eq!(
        command(
            &host,
            "open-account",
            "metrics-empty",
            json!({ "owner": "" })
        )
        .await,
        422,
        "invalid"
    );
    ids.insert("metrics-empty".to_string());
    assert_eq!(
        command(&host, "no-such-command", first, json!({})).await,
        404,
        "unknown"
    );
    let conflict = host
        .send(
            "deposit",
            &json!({ "aggregate_id": first, "payload": { "amount": 1 } }),
            &[("if-match", "\"99\"")],
        )
        .await
        .expect("conflict sent");
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    for _ in 0..2 {
        let reply = host
            .send(
                "deposit",
                &json!({ "aggregate_id": first, "payload": { "amount": 2 } }),
                &[("idempotency-key", "metrics-key")],
            )
            .await
            .expect("idempotent command sent");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(command(&host, "ping", "metrics-fuse", json!({})).await, 200);
    assert_eq!(
        command(&host, "explode", "metrics-fuse", json!({})).await,
        500,
        "a trap"
    );
    ids.insert("metrics-fuse".to_string());

    // The poison event is parked; then the fixed code replaces the running version.
    let parked = wait_caught_up(&host, "poison", 1, "active").await;
    assert_eq!(parked["parked"], 1, "{parked}");
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION_FIXED)
        .await;
    // The new code's worker starts once the catalog change reaches the projections.
    let old = parked["digest"].clone();
    wait_version(&host, "poison", 1, "the fixed poison code live", |s| {
        s["digest"] != old && s["status"] == "live" && s["checkpoint"] == s["head"]
    })
    .await;
    host.wait_live(&["account-balance", "bank-totals", "poison"])
        .await
        .expect("projections live");

    // Queries: a miss, then (the read models standing still) a hit, and an unknown one.
    let mut cache = BTreeSet::new();
    for _ in 0..10 {
        let reply = host
            .query("account", "id=metrics-acct-1", &[])
            .await
            .expect("query");
        assert_eq!(reply.status, 200, "{}", reply.body);
        cache.insert(
            reply
                .header("tessera-cache")
                .unwrap_or_default()
                .to_string(),
        );
        if cache.contains("hit") && cache.contains("miss") {
            break;
        }
    }
    assert!(cache.contains("hit") && cache.contains("miss"), "{cache:?}");
    let unknown = host
        .query("no-such-query", "", &[])
        .await
        .expect("unknown query");
    assert_eq!(unknown.status, 404);

    let (text, scrape) = scrape(&host).await;
    let everything = || format!("the scrape:\n{text}");

    // Every family, described, with exactly its labels.
    for (name, labels) in FAMILIES {
        let samples = family(&scrape, name);
        assert!(!samples.is_empty(), "no {name} in {}", everything());
        assert!(scrape.docs.contains_key(name), "{name} has no HELP");
        let wanted: BTreeSet<&str> = labels.iter().copied().collect();
        for sample in samples {
            let keys: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
            assert_eq!(keys, wanted, "{name} {:?}", sample.labels);
        }
    }
    // No label value is an aggregate id or a stream.
    let streams: BTreeSet<String> = ids
        .iter()
        .flat_map(|id| [id.clone(), format!("account-{id}"), format!("fuse-{id}")])
        .collect();
    for sample in &scrape.samples {
        for value in sample.labels.values() {
            assert!(
                !streams.contains(value) && !value.starts_with("metrics-"),
                "{} has the label value {value:?}",
                sample.metric
            );
        }
    }

    // Commands: each outcome the traffic above made, by command.
    let commands = "tessera_commands_total";
    for sample in family(&scrape, commands) {
        let outcome = sample.labels.get("outcome").unwrap_or_default();
        assert!(COMMAND_OUTCOMES.contains(&outcome), "{outcome}");
    }
    for (command, outcome) in [
        ("open-account", "ok"),
        ("deposit", "ok"),
        ("deposit", "replayed"),
        ("deposit", "conflict"),
        ("withdraw", "rejected"),
        ("open-account", "invalid"),
        ("(unknown)", "unknown"),
        ("explode", "plugin_error"),
    ] {
        let n = total(
            &scrape,
            commands,
            &[("command", command), ("outcome", outcome)],
        );
        assert!(n >= 1.0, "{command} {outcome}: {n} in {}", everything());
    }
    for command in ["open-account", "deposit", "withdraw", "explode"] {
        let n = total(
            &scrape,
            "tessera_command_duration_seconds",
            &[("command", command)],
        );
        assert!(n >= 1.0, "{command} timed {n} times");
    }

    // Queries.
    for (query, outcome, cache) in [
        ("account", "ok", "miss"),
        ("account", "ok", "hit"),
        ("(unknown)", "error", "miss"),
    ] {
        let labels = [("query", query), ("outcome", outcome), ("cache", cache)];
        let n = total(&scrape, "tessera_queries_total", &labels);
        assert!(n >= 1.0, "{labels:?}: {n}");
    }
    assert!(
        total(
            &scrape,
            "tessera_query_duration_seconds",
            &[("query", "account")]
        ) >= 2.0
    );

    // Projections: every version has its gauges; the traffic made these non-zero.
    let mut gauges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for name in [
        "tessera_projection_lag_events",
        "tessera_projection_lag_seconds",
        "tessera_projection_parked_events",
        "tessera_projection_rebuild_progress_ratio",
    ] {
        for sample in family(&scrape, name) {
            gauges.entry(name).or_default().insert(
                sample
                    .labels
                    .get("projection")
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    for (name, projections) in &gauges {
        for wanted in ["account-balance", "bank-totals", "poison"] {
            assert!(projections.contains(wanted), "{name} lacks {wanted}");
        }
    }
    for projection in ["account-balance", "bank-totals", "poison"] {
        let labels = [("projection", projection)];
        let applied = total(&scrape, "tessera_projection_events_applied_total", &labels);
        assert!(applied >= 1.0, "{projection} applied {applied}");
        // All live at the head: done.
        let progress = total(
            &scrape,
            "tessera_projection_rebuild_progress_ratio",
            &labels,
        );
        assert!(
            progress > 0.0,
            "{projection} progress {progress} in {}",
            everything()
        );
    }
    let poison = [("projection", "poison")];
    assert!(total(&scrape, "tessera_projection_failures_total", &poison) >= 1.0);
    assert!(total(&scrape, "tessera_projection_parked_events", &poison) >= 1.0);

    // Plugins.
    let loads = "tessera_plugin_loads_total";
    for plugin in [
        "bank-account",
        "account-balance",
        "bank-totals",
        "bank-queries",
    ] {
        let n = total(&scrape, loads, &[("plugin", plugin), ("outcome", "ok")]);
        assert!(n >= 1.0, "{plugin} loaded {n} times");
    }
    assert!(
        total(
            &scrape,
            loads,
            &[("plugin", "broken"), ("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        total(
            &scrape,
            "tessera_plugin_reloads_total",
            &[("plugin", "poison")]
        ) >= 1.0
    );
    assert!(
        total(
            &scrape,
            "tessera_plugin_call_failures_total",
            &[("kind", "trap")]
        ) >= 1.0
    );
    let calls = "tessera_plugin_call_duration_seconds";
    for (plugin, call) in [
        ("bank-account", "describe"),
        ("bank-account", "fold"),
        ("bank-account", "handle"),
        ("account-balance", "apply"),
        ("bank-queries", "query"),
    ] {
        let n = total(&scrape, calls, &[("plugin", plugin), ("call", call)]);
        assert!(n >= 1.0, "{plugin} {call}: {n}");
    }

    // The write store.
    assert!(total(&scrape, "tessera_group_commit_appends", &[]) >= 1.0);
    assert!(total(&scrape, "tessera_fsync_duration_seconds", &[]) >= 1.0);
    assert!(total(&scrape, "tessera_head_position", &[]) >= 10.0);
    assert!(total(&scrape, "tessera_write_store_bytes", &[]) > 0.0);
}

/// Off (`--no-metrics`), the route says so with the JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_metrics_off_answers_404() {
    let dir = Arc::new(tempfile::TempDir::new().expect("temp dir"));
    let host = TestHost::start_configured(dir, |config| config.metrics = false)
        .await
        .expect("host starts");
    let reply = host
        .request(reqwest::Method::GET, "/metrics")
        .await
        .expect("scrape");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(
        reply.body["error"]["code"], "metrics_disabled",
        "{}",
        reply.body
    );
}
