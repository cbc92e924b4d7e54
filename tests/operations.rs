//! Operations over real HTTP and real SQLite files: `GET /ready` across a restart with
//! projections catching up and one that cannot, and idempotency key retention (keys
//! replayed within it, free again after it, and a store from before retention opening
//! and expiring its old keys).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::lifecycle::wait_caught_up;
use crate::common::{Reply, TestHost, data_dir, eventually, plugins, test_dir};
use anyhow::Result;
use serde_json::{Value, json};
use tessera::event_store::{
    AppendRequest, Durability, EventStore, Metadata, NewEvent, SqliteEventStore,
};

/// Within this many events a live projection still counts as caught up (the host's
/// `READY_LAG`).
const READY_LAG: u64 = 1000;

async fn ready(host: &TestHost) -> Reply {
    host.request(reqwest::Method::GET, "/ready")
        .await
        .expect("GET /ready")
}

/// The projections a 503 from `/ready` names.
fn not_ready(reply: &Reply) -> Vec<String> {
    reply.body["error"]["details"]["projections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["projection"].as_str().map(str::to_string))
        .collect()
}

/// Appends, straight through the event store, `accounts` accounts named
/// `{prefix}{n}` with `deposits` deposits each; returns the head.
async fn append_accounts(data: &Path, prefix: &str, accounts: usize, deposits: usize) -> u64 {
    let store =
        Arc::new(SqliteEventStore::open(&data.join("events.db"), Durability::Normal).unwrap());
    let metadata: Metadata = serde_json::from_value(json!({
        "command_id": "setup", "correlation_id": "setup", "causation_id": "setup",
        "timestamp": "2026-01-01T00:00:00Z",
    }))
    .unwrap();
    let event = |event_type: &str, data: Value| NewEvent {
        event_type: event_type.into(),
        data: serde_json::value::to_raw_value(&data).unwrap(),
        metadata: metadata.clone(),
    };
    let mut head = 0;
    let mut pending = futures::stream::FuturesUnordered::new();
    for n in 0..accounts {
        let mut events = vec![event("AccountOpened", json!({ "owner": "ada" }))];
        events.extend((1..=deposits).map(|a| event("Deposited", json!({ "amount": a }))));
        let store = store.clone();
        let request = AppendRequest {
            stream: format!("account-{prefix}{n}"),
            expected_version: 0,
            events,
            idempotency: None,
        };
        pending.push(async move { store.append(request).await });
    }
    use futures::StreamExt;
    while let Some(outcome) = pending.next().await {
        if let tessera::event_store::AppendOutcome::Appended(commit) = outcome.unwrap() {
            head = head.max(commit.position);
        }
    }
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .unwrap();
    head
}

/// Every active projection version is within [`READY_LAG`] of `head`.
async fn assert_active_caught_up(host: &TestHost, head: u64) {
    for status in host.projections().await.unwrap() {
        if status["role"] == "active" {
            let checkpoint = status["checkpoint"].as_u64().unwrap();
            assert!(
                checkpoint + READY_LAG >= head,
                "ready while {status} is behind {head}"
            );
            assert!(
                status["status"] == "live" || status["status"] == "catching_up",
                "ready while {status}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_waits_for_every_active_projection_across_a_restart() {
    let dir = test_dir(&[
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::TEST_POISON_PROJECTION,
    ])
    .unwrap();
    // A log the projections have to catch up on at the first start.
    let head = append_accounts(&data_dir(&dir), "early-", 1500, 3).await;
    let host = TestHost::start_configured(dir.clone(), |_| {})
        .await
        .unwrap();
    // Liveness says ok at once; readiness only once every projection is caught up.
    let (status, _) = host.get("/health").await.unwrap();
    assert_eq!(status, 200);
    let reply = eventually("ready after the first catch-up", async || {
        let reply = ready(&host).await;
        match reply.status {
            200 => Ok(reply),
            503 => {
                reply.assert_error(503, "not_ready");
                assert!(!not_ready(&reply).is_empty(), "{}", reply.body);
                Err(reply.body.to_string())
            }
            other => panic!("/ready answered {other}: {}", reply.body),
        }
    })
    .await;
    assert_eq!(reply.body, json!({ "status": "ready" }));
    assert_active_caught_up(&host, head).await;

    // An account the poison projection cannot apply: the host is not ready until a
    // fix is deployed, and says which projection holds it up.
    let Reply { status, body, .. } = host
        .command("open-account", "p-1", json!({ "owner": "poison" }))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let reply = eventually("not ready on the poison", async || {
        let reply = ready(&host).await;
        if reply.status == 503 && not_ready(&reply) == ["poison"] {
            Ok(reply)
        } else {
            Err(reply.body.to_string())
        }
    })
    .await;
    reply.assert_error(503, "not_ready");
    assert_eq!(reply.header("retry-after"), Some("1"));

    // Restart with the projections' checkpoints behind: more events were appended
    // while the host was down.
    let mut host = host;
    host.shutdown().await;
    let head = append_accounts(&data_dir(&dir), "late-", 1500, 3).await;
    let host = TestHost::start_configured(dir.clone(), |_| {})
        .await
        .unwrap();
    // The poison can never pass: every answer until the fix is a 503 naming it.
    for _ in 0..20 {
        let reply = ready(&host).await;
        reply.assert_error(503, "not_ready");
        assert!(
            not_ready(&reply).contains(&"poison".to_string()),
            "{}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION_FIXED)
        .await;
    let reply = eventually("ready after the fix", async || {
        let reply = ready(&host).await;
        if reply.status == 200 {
            Ok(reply)
        } else {
            reply.assert_error(503, "not_ready");
            Err(reply.body.to_string())
        }
    })
    .await;
    assert_eq!(reply.body, json!({ "status": "ready" }));
    assert_active_caught_up(&host, head + 1).await;
    wait_caught_up(&host, "poison", 1, "active").await;
}

/// Sends a deposit of `amount` to `account` with an idempotency key.
async fn deposit(host: &TestHost, account: &str, amount: u64, key: &str) -> Reply {
    host.send(
        "deposit",
        &json!({ "aggregate_id": account, "payload": { "amount": amount } }),
        &[("idempotency-key", key)],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn within_retention_a_key_is_replayed() {
    // The default retention (a day).
    let host = TestHost::start(&[plugins::BANK_ACCOUNT]).await.unwrap();
    let Reply { status, .. } = host
        .command("open-account", "k-1", json!({ "owner": "ada" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let first = deposit(&host, "k-1", 5, "key-1").await;
    first.ok();
    let again = deposit(&host, "k-1", 5, "key-1").await;
    assert_eq!(again.ok(), first.ok());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    deposit(&host, "k-1", 7, "key-1")
        .await
        .assert_error(422, "idempotency_mismatch");
    assert_eq!(host.read_stream("account-k-1").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_retention_a_key_names_a_new_command() {
    let dir = test_dir(&[plugins::BANK_ACCOUNT]).unwrap();
    let host = TestHost::start_configured(dir, |config| {
        config.idempotency_retention = Duration::from_millis(300);
    })
    .await
    .unwrap();
    let Reply { status, .. } = host
        .command("open-account", "k-2", json!({ "owner": "ada" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    deposit(&host, "k-2", 5, "key-2").await.ok();
    // Until the sweep deletes the key, the other command is refused; then accepted.
    let accepted = eventually("the key expires", async || {
        let reply = deposit(&host, "k-2", 7, "key-2").await;
        match reply.status {
            200 => Ok(reply),
            422 => {
                reply.assert_error(422, "idempotency_mismatch");
                Err(reply.body.to_string())
            }
            other => panic!("deposit answered {other}: {}", reply.body),
        }
    })
    .await;
    assert_eq!(accepted.header("idempotent-replayed"), None);
    let events = host.read_stream("account-k-2").await.unwrap();
    let amounts: Vec<&Value> = events.iter().map(|e| &e["data"]["amount"]).collect();
    assert_eq!(amounts, [&Value::Null, &json!(5), &json!(7)]);
}

/// The write store's schema before retention (`created_ms` did not exist).
const SCHEMA_BEFORE_RETENTION: &str = "
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    timestamp   TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE idempotency_keys (
    key             TEXT    PRIMARY KEY,
    request_digest  TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    created_at      TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE snapshots (
    stream   TEXT    NOT NULL,
    digest   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    state    TEXT    NOT NULL,
    PRIMARY KEY (stream, digest)
) WITHOUT ROWID;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_from_before_retention_opens_and_expires_its_old_keys() -> Result<()> {
    let dir = test_dir(&[plugins::BANK_ACCOUNT])?;
    {
        let conn = rusqlite::Connection::open(data_dir(&dir).join("events.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA_BEFORE_RETENTION)?;
        let metadata = r#"{"command_id":"c","correlation_id":"c","causation_id":"c","timestamp":"2020-01-01T00:00:00Z"}"#;
        conn.execute(
            "INSERT INTO events (stream, version, event_type, data, metadata, timestamp)
             VALUES ('account-old', 1, 'AccountOpened', '{\"owner\":\"ada\"}', ?1, '2020-01-01T00:00:00Z')",
            [metadata],
        )?;
        // A key stored years ago, and one stored a moment ago (with a digest no
        // command has: any command sent with it is a mismatch while it is kept).
        let now = jiff::Timestamp::now().to_string();
        for (key, created_at) in [
            ("old-key", "2020-01-01T00:00:00.5Z"),
            ("new-key", now.as_str()),
        ] {
            conn.execute(
                "INSERT INTO idempotency_keys VALUES (?1, 'some-digest', 'account-old', 1, 1, 1, ?2)",
                [key, created_at],
            )?;
        }
    }
    // The default retention (a day): the old key is past it, the new one within.
    let host = TestHost::start_configured(dir, |_| {}).await?;
    assert_eq!(host.read_stream("account-old").await?.len(), 1);
    deposit(&host, "old", 3, "new-key")
        .await
        .assert_error(422, "idempotency_mismatch");
    let accepted = eventually("the old key expires", async || {
        let reply = deposit(&host, "old", 4, "old-key").await;
        match reply.status {
            200 => Ok(reply),
            422 => Err(reply.body.to_string()),
            other => panic!("deposit answered {other}: {}", reply.body),
        }
    })
    .await;
    assert_eq!(accepted.header("idempotent-replayed"), None);
    // The new key is still kept, and keys stored from now on are replayed.
    deposit(&host, "old", 3, "new-key")
        .await
        .assert_error(422, "idempotency_mismatch");
    let again = deposit(&host, "old", 4, "old-key").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(host.read_stream("account-old").await?.len(), 2);
    Ok(())
}
