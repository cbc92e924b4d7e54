//! The read store's doors, tried from inside: a hostile projection
//! (`test-hostile-projection`) and a hostile query handler (`test-hostile-query`) run
//! beside the bank's plugins and attempt everything a guest must not do with SQL.
//! Every attempt must be denied, the hostile projection must keep working, and the
//! bank's read models must not notice.

use std::path::Path;

use crate::common::read_side::{self, Ledger};
use crate::common::{TestHost, plugins};
use serde_json::{Value, json};

const HOSTILE: &str = "test-hostile-projection";

async fn start() -> TestHost {
    let host = TestHost::start(&[
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
        plugins::TEST_HOSTILE_PROJECTION,
        plugins::TEST_HOSTILE_QUERY,
    ])
    .await
    .expect("host starts");
    // Queries answer once the projections they read are set up.
    host.wait_live(&["account-balance", "bank-totals", HOSTILE])
        .await
        .expect("projections live");
    host
}

/// Sends a command that must succeed; returns its position.
async fn command(host: &TestHost, name: &str, id: &str, payload: Value) -> u64 {
    let reply = host
        .send(
            name,
            &json!({ "aggregate_id": id, "payload": payload }),
            &[],
        )
        .await
        .expect("command sent");
    reply.ok()["position"].as_u64().expect("position")
}

/// The attempts that were not denied.
fn allowed(attempts: &[Value]) -> Vec<&Value> {
    attempts
        .iter()
        .filter(|a| {
            !a["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("denied"))
        })
        .collect()
}

/// The hostile projection's attempts, as fresh as `position`.
async fn projection_attempts(host: &TestHost, position: u64) -> Vec<Value> {
    let reply = host
        .query_at("attempts", "", position)
        .await
        .expect("attempts query");
    reply.ok()["attempts"]
        .as_array()
        .cloned()
        .expect("attempts list")
}

fn whats(attempts: &[Value], phase: &str) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a["phase"] == phase)
        .map(|a| a["what"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What the host's own checkpoint table of a projection database says, read with a
/// separate read-only connection, with the database's journal mode.
fn checkpoint_on_disk(path: &Path) -> (i64, i64, String) {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the projection database");
    let (position, setup) = conn
        .query_row(
            "SELECT position, setup FROM _tessera_checkpoint WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("checkpoint row");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM _tessera_checkpoint", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 1, "the checkpoint table must hold exactly one row");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    (position, setup, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_projection_is_denied_every_door_and_keeps_working() {
    let host = start().await;
    let data = host.data_dir();

    // Ordinary traffic first, so the bank's read models have something to lose.
    let mut last = 0;
    for i in 0..5 {
        let id = format!("plain-{i}");
        command(
            &host,
            "open-account",
            &id,
            json!({ "owner": format!("owner {i}") }),
        )
        .await;
        last = command(&host, "deposit", &id, json!({ "amount": 100 + i })).await;
    }
    host.query_at("totals", "", last)
        .await
        .expect("totals")
        .ok();
    let balance_db = read_side_path(&data, "account-balance");

    // The owner carries an absolute path into the projection: the account-balance
    // database, which it must not be able to attach, copy or write.
    let path = balance_db.to_str().expect("UTF-8 path").to_string();
    let opened_with_path = command(&host, "open-account", "door", json!({ "owner": path })).await;
    last = command(&host, "deposit", "door", json!({ "amount": 7 })).await;

    let attempts = projection_attempts(&host, last).await;
    let hostile_db = read_side_path(&data, HOSTILE);
    let setup = whats(&attempts, "setup");
    let apply = whats(&attempts, &format!("apply {opened_with_path}"));
    // The plugin really made its attempts, in both phases, the path ones included.
    for what in [
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA journal_mode=DELETE",
        "PRAGMA synchronous=OFF",
        "BEGIN",
        "COMMIT",
        "UPDATE _tessera_checkpoint SET position = 0",
        "INSERT INTO _tessera_checkpoint (id, position, setup) VALUES (2, 0, 0)",
    ] {
        assert!(
            setup.iter().any(|w| w == what),
            "setup did not try {what}: {setup:?}"
        );
        assert!(
            apply.iter().any(|w| w == what),
            "apply did not try {what}: {apply:?}"
        );
    }
    assert!(
        apply.iter().any(|w| w == "ATTACH DATABASE '<path>'"),
        "apply did not try the path: {apply:?}"
    );
    let allowed = allowed(&attempts);
    assert!(
        allowed.is_empty(),
        "the projection got through: {allowed:#?}"
    );

    // Nothing reached the file system.
    for suffix in [".hostile", ".copy"] {
        let stray = format!("{path}{suffix}");
        assert!(!Path::new(&stray).exists(), "{stray} was created");
    }

    // The projection still works: live at the head, no error, its own rows there.
    let statuses = host
        .wait_live(&[HOSTILE, "account-balance"])
        .await
        .expect("live");
    let hostile = read_side::projection(&statuses, HOSTILE).expect("listed");
    assert_eq!(hostile["status"], "live", "{hostile}");
    assert!(hostile.get("error").is_none(), "{hostile}");
    let seen = host
        .query_at("seen", "", last)
        .await
        .expect("seen")
        .ok()
        .clone();
    assert_eq!(seen["count"], 6, "{seen}");
    assert_eq!(seen["last"], opened_with_path, "{seen}");

    // The host's checkpoint rows are intact, in WAL mode, and say what the host says.
    let head = host.head().await.expect("head");
    for (db, name) in [(&hostile_db, HOSTILE), (&balance_db, "account-balance")] {
        let (position, setup, mode) = checkpoint_on_disk(db);
        assert_eq!(position as u64, head, "{name}'s checkpoint on disk");
        assert_eq!(setup, 1, "{name}'s setup mark");
        assert_eq!(mode, "wal", "{name}'s journal mode");
    }

    // The bank's read model is exactly what the log says.
    assert_bank_unaffected(&host, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_query_cannot_write_through_its_read_access() {
    let host = start().await;
    let data = host.data_dir();
    command(&host, "open-account", "q1", json!({ "owner": "ada" })).await;
    let last = command(&host, "deposit", "q1", json!({ "amount": 42 })).await;

    let before = projection_attempts(&host, last).await;
    let balance_db = read_side_path(&data, "account-balance");
    assert!(
        !before.is_empty(),
        "the projection recorded its setup attempts"
    );

    let copy_to = data.join("stolen.db");
    let reply = host
        .query_post(
            "write",
            &json!({
                "path": balance_db.to_str().expect("UTF-8 path"),
                "copy_to": copy_to.to_str().expect("UTF-8 path"),
            }),
            &[],
        )
        .await
        .expect("write query");
    let attempts = reply.ok()["attempts"]
        .as_array()
        .cloned()
        .expect("attempts");
    assert!(attempts.len() >= 20, "too few attempts: {attempts:#?}");
    let allowed = allowed(&attempts);
    assert!(allowed.is_empty(), "the query got through: {allowed:#?}");
    assert!(!copy_to.exists(), "VACUUM INTO wrote {}", copy_to.display());

    // The projection's table is as it was (a parameter the handler ignores makes the
    // answer bypass the cache), and the projection still runs.
    let after = host
        .query("attempts", "fresh=1", &[])
        .await
        .expect("attempts again");
    assert_eq!(after.header("tessera-cache"), Some("miss"));
    assert_eq!(
        after.ok()["attempts"].as_array(),
        Some(&before),
        "the table changed"
    );

    // The pooled read connections were not left inside a transaction or writable:
    // new events still show up in later queries.
    let next = command(&host, "open-account", "q2", json!({ "owner": "grace" })).await;
    let seen = host.query_at("seen", "", next).await.expect("seen");
    assert_eq!(seen.ok()["count"], 2, "{}", seen.body);
    for _ in 0..20 {
        let reply = host
            .query("seen", "again=1", &[])
            .await
            .expect("seen again");
        assert_eq!(reply.ok()["count"], 2, "{}", reply.body);
    }
    let statuses = host.wait_live(&[HOSTILE]).await.expect("live");
    assert!(read_side::projection(&statuses, HOSTILE).is_some());
    assert_bank_unaffected(&host, next).await;
}

/// A trigger on the host's checkpoint table would run inside the host's own update of
/// it, where the guest rules do not apply: `CREATE TRIGGER ... AFTER UPDATE ON
/// _tessera_checkpoint BEGIN UPDATE _tessera_checkpoint SET position = 0; END` rewinds
/// the checkpoint on disk after every batch while the host reports it current, and
/// the next start applies every event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_projection_cannot_plant_triggers_on_the_host_checkpoint() {
    let host = start().await;
    command(&host, "open-account", "before", json!({ "owner": "ada" })).await;
    let rigged = command(&host, "open-account", "rigged", json!({ "owner": "rig" })).await;
    let last = command(&host, "open-account", "after", json!({ "owner": "grace" })).await;
    let attempts = projection_attempts(&host, last).await;
    host.wait_live(&[HOSTILE]).await.expect("live");
    let hostile_db = read_side_path(&host.data_dir(), HOSTILE);

    // The consequences first: the checkpoint on disk is the one the host reports...
    let reported = host.projections().await.expect("projections");
    let reported = read_side::projection(&reported, HOSTILE).expect("listed")["checkpoint"].clone();
    let (on_disk, _, _) = checkpoint_on_disk(&hostile_db);
    assert_eq!(
        reported, on_disk,
        "the checkpoint on disk differs from the one the host reports; attempts: {attempts:#?}"
    );
    // ...and a restart resumes from it without applying anything twice.
    let host = host.restart().await.expect("restart");
    let next = command(
        &host,
        "open-account",
        "restarted",
        json!({ "owner": "edsger" }),
    )
    .await;
    let statuses = host
        .wait_live_for(&[HOSTILE], 600)
        .await
        .expect("the projection is live again after a restart");
    assert!(read_side::projection(&statuses, HOSTILE).is_some());
    let seen = host.query_at("seen", "", next).await.expect("seen");
    assert_eq!(seen.ok()["count"], 4, "{}", seen.body);

    // And the attempts themselves were refused.
    let tried = whats(&attempts, &format!("apply {rigged}"));
    assert!(
        tried.len() >= 2,
        "the plugin did not try the triggers: {attempts:#?}"
    );
    let allowed = allowed(&attempts);
    assert!(
        allowed.is_empty(),
        "the projection got through: {allowed:#?}"
    );
}

/// A temporary view or table named `_tessera_checkpoint` would shadow the host's
/// table on the projection's connection: the host's checkpoint update then hits the
/// guest's object (a view makes every batch fail; a table would swallow the
/// checkpoint), and the guest cannot even drop it again (dropping is a delete on the
/// host's table name, which is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_projection_cannot_shadow_the_host_checkpoint() {
    let host = start().await;
    let shadowed = command(
        &host,
        "open-account",
        "shadowed",
        json!({ "owner": "shadow" }),
    )
    .await;
    let last = command(&host, "open-account", "after", json!({ "owner": "grace" })).await;
    // A shadow that got through breaks the host's commit of every batch from then on,
    // so the projection never gets live: its status says why.
    let statuses = host.wait_live_for(&[HOSTILE], 400).await;
    let statuses = statuses.expect("the hostile projection is live at the head");
    let hostile = read_side::projection(&statuses, HOSTILE).expect("listed");
    assert!(hostile.get("error").is_none(), "{hostile}");
    let attempts = projection_attempts(&host, last).await;
    let tried = whats(&attempts, &format!("apply {shadowed}"));
    assert_eq!(
        tried.len(),
        2,
        "the plugin did not try to shadow: {attempts:#?}"
    );
    let allowed = allowed(&attempts);
    assert!(
        allowed.is_empty(),
        "the projection got through: {allowed:#?}"
    );
}

fn read_side_path(data: &Path, projection: &str) -> std::path::PathBuf {
    read_side::projection_db(data, projection).expect("the projection's database")
}

/// Every account and the totals match what the log says.
async fn assert_bank_unaffected(host: &TestHost, position: u64) {
    let log = host.read_log().await.expect("log");
    let ledger = Ledger::from_log(&log, u64::MAX).expect("ledger");
    let accounts = host.all_accounts(100, position).await.expect("accounts");
    let seen: std::collections::BTreeMap<String, i64> = accounts
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_string(),
                a["balance"].as_i64().expect("balance"),
            )
        })
        .collect();
    assert_eq!(seen, ledger.balances());
    for (id, (owner, balance, version)) in &ledger.accounts {
        let reply = host
            .query_at("account", &format!("id={id}"), position)
            .await
            .expect("account");
        let body = reply.ok();
        assert_eq!(body["owner"], owner.as_str(), "{body}");
        assert_eq!(body["balance"], *balance, "{body}");
        assert_eq!(body["version"], *version, "{body}");
    }
    let totals = host.query_at("totals", "", position).await.expect("totals");
    let totals = totals.ok();
    assert_eq!(totals["open_accounts"], ledger.accounts.len(), "{totals}");
    assert_eq!(totals["total_balance"], ledger.total_balance(), "{totals}");
}
