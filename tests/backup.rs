//! `POST /admin/backup` while commands keep arriving: the copy opens as a data folder,
//! its log equals the live log up to the copy's position, no copied read model is
//! ahead of it, and a host started on the copy serves the answers the log up to that
//! position gives (the same as a host that rebuilt every projection from the copied log
//! alone). Also the refusals: no token, a relative or non-empty destination.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::lifecycle::{account_id, append_bank_log, copy_log};
use crate::common::{Reply, TestHost, at_least, data_dir, eventually, plugins, test_dir};
use serde_json::{Value, json};
use tessera::event_store::{Durability, EventStore, SqliteEventStore};

const TOKEN: &str = "backup-secret";
const ACCOUNTS: usize = 300;

fn bank() -> Vec<&'static str> {
    vec![
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
    ]
}

async fn backup(host: &TestHost, body: &Value, token: Option<&str>) -> Reply {
    host.call(reqwest::Method::POST, "/admin/backup", Some(body), token)
        .await
        .expect("backup request")
}

/// Every event of the log at `path`, as JSON, straight from the store.
async fn log_of(path: &std::path::Path) -> Vec<Value> {
    let store = SqliteEventStore::open(path, Durability::Normal).expect("the copy opens");
    let mut events = Vec::new();
    loop {
        let page = store.read_all(events.len() as u64, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        events.extend(page.iter().map(|e| serde_json::to_value(e).unwrap()));
    }
    store.close();
    events
}

/// What the bank's read models must say after `log`: each account's owner and
/// balance, the number of accounts and the sum of balances.
fn fold(log: &[Value]) -> (BTreeMap<String, (String, i64)>, i64, i64) {
    let mut accounts = BTreeMap::new();
    for event in log {
        let id = event["stream"]
            .as_str()
            .unwrap()
            .trim_start_matches("account-")
            .to_string();
        match event["type"].as_str().unwrap() {
            "AccountOpened" => {
                let owner = event["data"]["owner"].as_str().unwrap().to_string();
                accounts.insert(id, (owner, 0));
            }
            "Deposited" => {
                accounts.get_mut(&id).unwrap().1 += event["data"]["amount"].as_i64().unwrap()
            }
            "Withdrawn" => {
                accounts.get_mut(&id).unwrap().1 -= event["data"]["amount"].as_i64().unwrap()
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let total = accounts.values().map(|(_, balance)| balance).sum();
    let count = accounts.len() as i64;
    (accounts, count, total)
}

/// The answers compared between hosts: totals, the first page of accounts, and a
/// sample of single accounts, each at least as fresh as `position`.
async fn answers(host: &TestHost, position: u64) -> Vec<Value> {
    let mut answers = Vec::new();
    let mut asks = vec![
        ("totals", String::new()),
        ("accounts", "limit=500".to_string()),
    ];
    for n in (0..ACCOUNTS).step_by(37) {
        asks.push(("account", format!("id={}", account_id(n))));
    }
    for (name, query) in asks {
        let reply = host
            .query(name, &query, &at_least(Some(position)))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{name}?{query}: {}", reply.body);
        assert_eq!(
            reply.header("tessera-position").map(str::parse::<u64>),
            Some(Ok(position)),
            "{name}?{query} answered at another position"
        );
        answers.push(json!({ "query": name, "params": query, "answer": reply.body }));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_is_a_consistent_copy_that_a_host_serves() {
    let dir = test_dir(&bank()).unwrap();
    append_bank_log(&data_dir(&dir), ACCOUNTS, 5, "ada")
        .await
        .unwrap();
    let host = TestHost::start_configured(dir.clone(), |config| {
        config.admin_token = Some(TOKEN.into());
    })
    .await
    .unwrap();
    host.wait_ready().await;

    // Deposits keep arriving from four clients until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for client in 0..4 {
        let api = host.api().clone();
        let (stop, done) = (stop.clone(), done.clone());
        senders.push(tokio::spawn(async move {
            let mut n = client;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({ "aggregate_id": account_id(n % ACCOUNTS), "payload": { "amount": 1 + n % 7 } });
                let reply = api.send("deposit", &body, &[]).await.unwrap();
                assert_eq!(reply.status, 200, "{}", reply.body);
                done.fetch_add(1, Ordering::Relaxed);
                n += 4;
            }
        }));
    }
    let at_least = |count: usize| {
        let done = done.clone();
        async move {
            eventually("commands to arrive", async || {
                let now = done.load(Ordering::Relaxed);
                if now >= count {
                    Ok(now)
                } else {
                    Err(now.to_string())
                }
            })
            .await
        }
    };
    let before = at_least(50).await;

    let target = tempfile::TempDir::new().unwrap();
    let (sent_before, started) = (done.load(Ordering::Relaxed), std::time::Instant::now());
    let reply = backup(&host, &json!({ "dest": target.path() }), Some(TOKEN)).await;
    let report = reply.ok().clone();
    // A figure for the record, not an assertion: the machine is shared.
    eprintln!(
        "backup of {} events took {:?}; {} commands acknowledged meanwhile",
        report["position"],
        started.elapsed(),
        done.load(Ordering::Relaxed) - sent_before
    );
    let position = report["position"].as_u64().unwrap();
    // Commands acknowledged after the backup answered are not in the copy.
    let after = at_least(done.load(Ordering::Relaxed) + 50).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(after > before);

    let live = host.read_log().await.unwrap();
    assert!(
        live.len() as u64 > position,
        "commands after the backup are not in it"
    );
    assert!(
        position > (ACCOUNTS * 6) as u64,
        "the copy holds the commands before it"
    );
    // The copy's log is the live log up to its position.
    let copied = log_of(&target.path().join("data").join("events.db")).await;
    assert_eq!(copied.len() as u64, position);
    assert_eq!(copied[..], live[..position as usize]);
    // Every read model copied is at or behind the copied log.
    let files = report["files"].as_array().unwrap();
    let databases: Vec<&Value> = files
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("data/projections/"))
        .filter(|f| f["path"].as_str().unwrap().ends_with(".db"))
        .collect();
    assert_eq!(databases.len(), 2, "{files:?}");
    for file in databases {
        let path = target.path().join(file["path"].as_str().unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let checkpoint: i64 = conn
            .query_row(
                "SELECT position FROM _tessera_checkpoint WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            checkpoint as u64 <= position,
            "{file} is ahead of {position}"
        );
        assert_eq!(file["checkpoint"], checkpoint, "{file}");
    }
    for name in [
        "data/events.db",
        "data/projections/lifecycle.json",
        "backup.json",
    ] {
        assert!(target.path().join(name).is_file(), "{name} missing");
    }
    for plugin in bank() {
        let file = std::path::Path::new(plugin).file_name().unwrap();
        assert!(
            target.path().join("plugins").join(file).is_file(),
            "{file:?} not copied"
        );
    }

    // A host on the copy: the layout is a host's folder (data/ and plugins/).
    let target = Arc::new(target);
    let restored = TestHost::start_configured(target.clone(), |_| {})
        .await
        .unwrap();
    restored.wait_ready().await;
    assert_eq!(restored.head().await.unwrap(), position);
    let served = answers(&restored, position).await;
    // What the log up to the position says.
    let (accounts, count, total) = fold(&copied);
    assert_eq!(served[0]["answer"]["open_accounts"], count);
    assert_eq!(served[0]["answer"]["total_balance"], total);
    for answer in served.iter().filter(|a| a["query"] == "account") {
        let id = answer["answer"]["id"].as_str().unwrap();
        let (owner, balance) = &accounts[id];
        assert_eq!(answer["answer"]["owner"], *owner);
        assert_eq!(answer["answer"]["balance"], *balance, "{answer}");
    }
    // And the same answers, to the byte, as a host that rebuilt every read model from
    // the copied log alone.
    let rebuilt_dir = test_dir(&bank()).unwrap();
    copy_log(&target.path().join("data"), &data_dir(&rebuilt_dir)).unwrap();
    let rebuilt = TestHost::start_configured(rebuilt_dir, |_| {})
        .await
        .unwrap();
    rebuilt.wait_ready().await;
    assert_eq!(answers(&rebuilt, position).await, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_is_refused_without_the_token_or_a_usable_destination() {
    let dir = test_dir(&bank()).unwrap();
    let host = TestHost::start_configured(dir, |config| config.admin_token = Some(TOKEN.into()))
        .await
        .unwrap();
    let target = tempfile::TempDir::new().unwrap();
    let dest = json!({ "dest": target.path() });
    backup(&host, &dest, None)
        .await
        .assert_error(401, "unauthorized");
    backup(&host, &dest, Some("wrong"))
        .await
        .assert_error(401, "unauthorized");
    backup(&host, &json!({ "dest": "relative/path" }), Some(TOKEN))
        .await
        .assert_error(400, "bad_destination");
    backup(&host, &json!({}), Some(TOKEN))
        .await
        .assert_error(400, "bad_request");
    std::fs::write(target.path().join("something"), "x").unwrap();
    backup(&host, &dest, Some(TOKEN))
        .await
        .assert_error(400, "bad_destination");
    // A file is not a folder.
    backup(
        &host,
        &json!({ "dest": target.path().join("something") }),
        Some(TOKEN),
    )
    .await
    .assert_error(400, "bad_destination");
    // The refusals wrote nothing.
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 1);
    // A missing folder is made.
    let fresh = target.path().join("new").join("copy");
    let report = backup(&host, &json!({ "dest": fresh }), Some(TOKEN)).await;
    assert_eq!(report.ok()["position"], 0);
    assert!(fresh.join("data").join("events.db").is_file());
}
