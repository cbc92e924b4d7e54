//! End-to-end tests of the projection lifecycle over HTTP: a new schema version built
//! beside the active one and switched to without downtime, rollback and retirement,
//! manual cutover, rebuilds, failing events (halt or park, then fix), a restart in the
//! middle of a catch-up, and the admin guard of the lifecycle endpoints.
//!
//! `account-balance` comes in two schema versions: v1 (`plugins/account-balance`) and
//! v2 (`plugins/testing/account-balance-v2`, an extra `opened_at` column). The `account`
//! query of `bank-queries` answers `SELECT *`, so the shape of an answer tells which
//! version served it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::common::lifecycle::{
    account_id, append_accounts, append_bank_log, copy_log, version_of, versions_of,
    wait_caught_up, wait_version,
};
use crate::common::{Api, Reply, TestHost, at_least, data_dir, eventually, plugins, test_dir};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// The projection with two schema versions.
const BALANCE: &str = "account-balance";

/// The bank: the command handler, both bank projections (account-balance v1) and the
/// query handler.
const BANK: [&str; 4] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
];

// --- Helpers ---------------------------------------------------------------------

/// Which schema version of `account-balance` an `account` answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    V1,
    V2,
}

/// The columns of v1's `accounts` table; v2 adds `opened_at`.
const V1_COLUMNS: [&str; 5] = ["balance", "id", "owner", "updated_at", "version"];

/// The shape of an `account` answer: exactly v1's columns or exactly v2's.
fn shape(body: &Value) -> Result<Shape, String> {
    let keys: BTreeSet<&str> = body
        .as_object()
        .ok_or_else(|| format!("not an object: {body}"))?
        .keys()
        .map(String::as_str)
        .collect();
    let v1: BTreeSet<&str> = V1_COLUMNS.into_iter().collect();
    let mut v2 = v1.clone();
    v2.insert("opened_at");
    if keys == v1 {
        Ok(Shape::V1)
    } else if keys == v2 {
        Ok(Shape::V2)
    } else {
        Err(format!("neither v1 nor v2: {body}"))
    }
}

/// The body of `POST /commands/{name}`.
fn command(aggregate_id: &str, payload: Value) -> Value {
    json!({ "aggregate_id": aggregate_id, "payload": payload })
}

/// Sends a command and asserts success; returns the reply.
async fn ok_command(host: &TestHost, name: &str, id: &str, payload: Value) -> Reply {
    let reply = host
        .send(name, &command(id, payload), &[])
        .await
        .expect("command sent");
    assert_eq!(reply.status, 200, "{name} {id} failed: {}", reply.body);
    reply
}

/// The log position a command reply reports.
fn position(reply: &Reply) -> u64 {
    reply.body["position"].as_u64().expect("position")
}

/// Opens `count` accounts (`acc-00000`...), owner `owner-{n}`, with `deposits`
/// deposits each, through many concurrent clients. Returns the ids.
async fn open_accounts(host: &TestHost, count: usize, deposits: usize) -> Vec<String> {
    open_accounts_from(host, 0, count, deposits).await
}

/// [`open_accounts`] from the `first`th account id on.
async fn open_accounts_from(
    host: &TestHost,
    first: usize,
    count: usize,
    deposits: usize,
) -> Vec<String> {
    let ids: Vec<String> = (first..first + count).map(account_id).collect();
    let clients = 8;
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let url = host.url.clone();
        let mine: Vec<(usize, String)> = ids
            .iter()
            .cloned()
            .enumerate()
            .filter(|(n, _)| n % clients == client)
            .collect();
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            for (n, id) in mine {
                let n = first + n;
                let opened = command(&id, json!({ "owner": format!("owner-{n}") }));
                let reply = Api::of(&http, &url)
                    .send("open-account", &opened, &[])
                    .await
                    .expect("sent");
                assert_eq!(reply.status, 200, "open {id}: {}", reply.body);
                for d in 0..deposits {
                    let amount = json!({ "amount": (n + d) % 50 + 1 });
                    let reply = Api::of(&http, &url)
                        .send("deposit", &command(&id, amount), &[])
                        .await
                        .expect("sent");
                    assert_eq!(reply.status, 200, "deposit {id}: {}", reply.body);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("an account opener panicked");
    }
    ids
}

/// The `account` answer for `id`, asserting success.
async fn account(host: &TestHost, id: &str, at: Option<u64>) -> Value {
    let reply = host
        .query("account", &format!("id={id}"), &at_least(at))
        .await
        .expect("query sent");
    reply.ok().clone()
}

/// Deploys account-balance v2 over v1 and waits until it has taken over.
async fn cut_over_to_v2(host: &TestHost) {
    host.deploy_file(BALANCE, plugins::ACCOUNT_BALANCE_V2).await;
    wait_caught_up(host, BALANCE, 2, "active").await;
}

/// The role of version `version` of `name` right now.
async fn role(host: &TestHost, name: &str, version: u64) -> String {
    let list = host.projections().await.expect("statuses");
    version_of(&list, name, version)
        .unwrap_or_else(|| panic!("{name} v{version} is not listed: {list:?}"))["role"]
        .as_str()
        .expect("role")
        .to_string()
}

/// One `account` query asked by a client during the switch.
#[derive(Debug)]
struct Asked {
    client: usize,
    id: String,
    sent: Instant,
    received: Instant,
    status: u16,
    shape: Result<Shape, String>,
    /// `Tessera-Position`: the checkpoint of the version that answered.
    position: Option<u64>,
    balance: Option<i64>,
}

/// One look at `GET /projections` during the switch: account-balance v2's role.
#[derive(Debug)]
struct Looked {
    sent: Instant,
    received: Instant,
    role: Option<String>,
}

/// Asks `account` for random accounts until `stop`; every answer is recorded and
/// counted (all answers, v2 answers).
async fn query_client(
    client: usize,
    url: String,
    ids: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    [answered, v2_answers]: [Arc<AtomicUsize>; 2],
) -> Vec<Asked> {
    let http = reqwest::Client::new();
    let mut asked = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let id = ids[fastrand::usize(..ids.len())].clone();
        let sent = Instant::now();
        let response = http
            .get(format!("{url}/queries/account?id={id}"))
            .send()
            .await;
        let (status, position, body) = match response {
            Ok(response) => {
                let reply = Reply::read(response).await.expect("reply");
                let position = reply
                    .header("tessera-position")
                    .and_then(|p| p.parse().ok());
                (reply.status, position, reply.body)
            }
            Err(error) => (0, None, Value::String(error.to_string())),
        };
        let received = Instant::now();
        let shape = if status == 200 {
            shape(&body)
        } else {
            Err(format!("{status}: {body}"))
        };
        answered.fetch_add(1, Ordering::Relaxed);
        if shape == Ok(Shape::V2) {
            v2_answers.fetch_add(1, Ordering::Relaxed);
        }
        asked.push(Asked {
            client,
            id,
            sent,
            received,
            status,
            shape,
            position,
            balance: body["balance"].as_i64(),
        });
    }
    asked
}

/// Deposits 1 into its own accounts until `stop`, and after each deposit reads the
/// account back without asking for freshness: the projection is inline, so the
/// answer must hold the deposit. Returns the reads that did not (account, expected
/// balance, answer).
async fn depositor(
    url: String,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, i64, Value)> {
    let http = reqwest::Client::new();
    let mut balances = BTreeMap::new();
    for id in &ids {
        let body: Value = http
            .get(format!("{url}/queries/account?id={id}"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        balances.insert(id.clone(), body["balance"].as_i64().expect("balance"));
    }
    let mut missed = Vec::new();
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = &ids[turn % ids.len()];
        turn += 1;
        let reply = Api::of(&http, &url)
            .send("deposit", &command(id, json!({ "amount": 1 })), &[])
            .await
            .expect("sent");
        assert_eq!(reply.status, 200, "deposit {id}: {}", reply.body);
        let expected = balances.get(id).copied().expect("known account") + 1;
        balances.insert(id.clone(), expected);
        let body: Value = http
            .get(format!("{url}/queries/account?id={id}"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        if body["balance"].as_i64() != Some(expected) {
            missed.push((id.clone(), expected, body));
        }
    }
    missed
}

// --- A new schema version without downtime ----------------------------------------

/// Accounts whose history is appended straight through the event store before the
/// zero-downtime test's host starts, and events per account: a history long enough
/// that building v2 takes a while.
const HISTORY_ACCOUNTS: usize = 200;
const HISTORY_DEPOSITS: usize = 99;

/// v2 is deployed while clients query and send commands: no query fails, every
/// answer is wholly v1 or wholly v2, the switch is one-way and happens only once v2
/// has caught up, and v2's read model then equals one rebuilt from the log alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_schema_version_takes_over_without_downtime() {
    let dir = test_dir(&BANK).expect("folder");
    append_bank_log(&data_dir(&dir), HISTORY_ACCOUNTS, HISTORY_DEPOSITS, "ada")
        .await
        .expect("history");
    let mut host = TestHost::start_configured(dir, |_| {})
        .await
        .expect("host starts");
    wait_caught_up(&host, BALANCE, 1, "active").await;
    wait_caught_up(&host, "bank-totals", 1, "active").await;
    // And 200 accounts opened through the host.
    let mut ids: Vec<String> = (0..HISTORY_ACCOUNTS).map(account_id).collect();
    ids.extend(open_accounts_from(&host, HISTORY_ACCOUNTS, 200, 2).await);
    let ids = Arc::new(ids);

    let stop = Arc::new(AtomicBool::new(false));
    let v2_answers = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for client in 0..4 {
        clients.spawn(query_client(
            client,
            host.url.clone(),
            ids.clone(),
            stop.clone(),
            [answered.clone(), v2_answers.clone()],
        ));
    }
    let mut depositors = JoinSet::new();
    for group in 0..2 {
        // Each depositor owns its accounts, so it knows their balances.
        let mine: Vec<String> = ids.iter().skip(group).step_by(2).cloned().collect();
        depositors.spawn(depositor(host.url.clone(), mine, stop.clone()));
    }
    let looker = {
        let host_url = host.url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut looked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let body: Value = http
                    .get(format!("{host_url}/projections"))
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("JSON");
                let received = Instant::now();
                let list = body["projections"].as_array().cloned().unwrap_or_default();
                looked.push(Looked {
                    sent,
                    received,
                    role: version_of(&list, BALANCE, 2)
                        .and_then(|v2| v2["role"].as_str())
                        .map(str::to_string),
                });
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            looked
        })
    };

    // Let the clients see v1 for a while, then deploy v2 under their feet.
    eventually("answers before the deploy", async || {
        let seen = answered.load(Ordering::Relaxed);
        if seen >= 200 {
            Ok(())
        } else {
            Err(format!("{seen} answers"))
        }
    })
    .await;
    let head_at_deploy = host.head().await.expect("head");
    host.deploy_file(BALANCE, plugins::ACCOUNT_BALANCE_V2).await;
    wait_version(&host, BALANCE, 2, "v2 active", |s| s["role"] == "active").await;
    // Keep going until the clients have had plenty of v2 answers.
    eventually("v2 answers after the cutover", async || {
        let seen = v2_answers.load(Ordering::Relaxed);
        if seen >= 400 {
            Ok(())
        } else {
            Err(format!("{seen} v2 answers"))
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut asked = Vec::new();
    while let Some(done) = clients.join_next().await {
        asked.extend(done.expect("a query client panicked"));
    }
    let mut missed = Vec::new();
    while let Some(done) = depositors.join_next().await {
        missed.extend(done.expect("a depositor panicked"));
    }
    let looked = looker.await.expect("the status looker panicked");

    // Zero failed queries; each answer wholly one version's.
    let failed: Vec<&Asked> = asked.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} queries failed, e.g. {:?}",
        failed.len(),
        asked.len(),
        failed.first()
    );
    let malformed: Vec<&Asked> = asked.iter().filter(|a| a.shape.is_err()).collect();
    assert!(
        malformed.is_empty(),
        "answers of no known shape: {malformed:?}"
    );
    let v1 = asked.iter().filter(|a| a.shape == Ok(Shape::V1)).count();
    let v2 = asked.iter().filter(|a| a.shape == Ok(Shape::V2)).count();
    assert!(v1 > 0 && v2 > 0, "{v1} v1 and {v2} v2 answers");

    // One-way, per client: no v1 answer after a v2 one.
    for client in 0..4 {
        let mut seen_v2 = false;
        for a in asked.iter().filter(|a| a.client == client) {
            if a.shape == Ok(Shape::V2) {
                seen_v2 = true;
            } else {
                assert!(!seen_v2, "client {client} got v1 after v2: {a:?}");
            }
        }
    }

    // While v2 was building, queries were answered by v1; once it was active, by v2.
    assert!(
        looked.iter().any(|l| l.role.as_deref() == Some("building")),
        "v2 was never seen building"
    );
    for look in &looked {
        match look.role.as_deref() {
            Some("building") => {
                for a in asked.iter().filter(|a| a.received < look.sent) {
                    assert_eq!(
                        a.shape,
                        Ok(Shape::V1),
                        "answered by v2 before a look saw v2 still building: {a:?}"
                    );
                }
            }
            Some("active") => {
                for a in asked.iter().filter(|a| a.sent > look.received) {
                    assert_eq!(
                        a.shape,
                        Ok(Shape::V2),
                        "answered by v1 after a look saw v2 active: {a:?}"
                    );
                }
            }
            _ => {}
        }
    }
    // v2 took over only once it had caught up: it had at least the whole log as it
    // was when it was deployed.
    for a in asked.iter().filter(|a| a.shape == Ok(Shape::V2)) {
        let at = a.position.expect("Tessera-Position on every answer");
        assert!(
            at >= head_at_deploy,
            "v2 answered at position {at}, before the head at its deploy ({head_at_deploy}): {a:?}"
        );
    }
    // Balances only grow, and no read went back in time per account and client.
    for client in 0..4 {
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        for a in asked.iter().filter(|a| a.client == client) {
            let balance = a.balance.expect("balance");
            if let Some(before) = last.insert(&a.id, balance) {
                assert!(
                    balance >= before,
                    "client {client} saw {} go from {before} back to {balance}: {a:?}",
                    a.id
                );
            }
        }
    }
    assert!(
        missed.is_empty(),
        "reads after an acknowledged deposit (inline projection) missed it: {missed:?}"
    );

    // After the cutover, v2 equals a fresh rebuild from the log alone.
    let final_head = host.head().await.expect("head");
    wait_caught_up(&host, BALANCE, 2, "active").await;
    let mut answers = Vec::new();
    for id in ids.iter() {
        answers.push(account(&host, id, Some(final_head)).await);
    }
    host.shutdown().await;
    let fresh_dir = test_dir(&[
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE_V2,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
    ])
    .expect("folder");
    copy_log(&host.data_dir(), &data_dir(&fresh_dir)).expect("copy the log");
    let fresh = TestHost::start_configured(fresh_dir, |_| {})
        .await
        .expect("fresh host");
    let live = wait_caught_up(&fresh, BALANCE, 2, "active").await;
    assert_eq!(live["head"], final_head, "the copy holds the whole log");
    assert_eq!(
        versions_of(&fresh.projections().await.expect("statuses"), BALANCE),
        [2]
    );
    for (id, before) in ids.iter().zip(&answers) {
        let rebuilt = account(&fresh, id, Some(final_head)).await;
        assert_eq!(shape(&rebuilt), Ok(Shape::V2));
        assert_eq!(
            &rebuilt, before,
            "account {id} differs from a fresh rebuild"
        );
    }
}

// --- Rollback and retirement ---------------------------------------------------------

/// After the cutover v1 stays up to date on standby: rolling back answers with v1's
/// shape and the current data. The active version cannot be retired; the standby one
/// can, and then it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_returns_to_a_current_v1_and_the_standby_version_can_be_retired() {
    // No folder watcher: its reload after the deploy would bring the retired version
    // back (see `a_retired_version_stays_retired_when_the_plugins_change`).
    let dir = test_dir(&BANK).expect("folder");
    let host = TestHost::start_configured(dir, |config| config.watch_plugins = false)
        .await
        .expect("host starts");
    let ids = open_accounts(&host, 20, 1).await;
    cut_over_to_v2(&host).await;
    assert_eq!(role(&host, BALANCE, 1).await, "standby");
    let id = &ids[3];
    let before = account(&host, id, None).await;
    assert_eq!(shape(&before), Ok(Shape::V2));

    // A deposit after the cutover reaches v1 on standby too.
    let deposit = ok_command(&host, "deposit", id, json!({ "amount": 1000 })).await;
    let at = position(&deposit);
    wait_version(&host, BALANCE, 1, "v1 has the deposit", |s| {
        s["checkpoint"].as_u64() >= Some(at)
    })
    .await;

    let rolled = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/rollback"),
            None,
            None,
        )
        .await
        .expect("rollback");
    assert_eq!(rolled.ok()["active"]["version"], 1, "{}", rolled.body);
    assert_eq!(role(&host, BALANCE, 1).await, "active");
    assert_eq!(role(&host, BALANCE, 2).await, "standby");
    let after = account(&host, id, None).await;
    assert_eq!(shape(&after), Ok(Shape::V1), "{after}");
    assert_eq!(
        after["balance"].as_i64(),
        before["balance"].as_i64().map(|b| b + 1000),
        "v1 answers with the current balance"
    );
    assert_eq!(after["owner"], before["owner"]);
    assert_eq!(after["version"], deposit.body["version"]);

    // Retire: not the active version; the standby one, which then disappears.
    let path = |version: u32| format!("/projections/{BALANCE}/versions/{version}");
    let refused = host
        .call(Method::DELETE, &path(1), None, None)
        .await
        .expect("retire v1");
    refused.assert_error(409, "active_version");
    let unknown = host
        .call(Method::DELETE, &path(9), None, None)
        .await
        .expect("retire v9");
    unknown.assert_error(404, "unknown_version");
    let retired = host
        .call(Method::DELETE, &path(2), None, None)
        .await
        .expect("retire v2");
    assert_eq!(retired.status, 204, "{}", retired.body);
    let list = host.projections().await.expect("statuses");
    assert_eq!(versions_of(&list, BALANCE), [1], "{list:?}");
    assert_eq!(version_of(&list, BALANCE, 1).expect("v1")["role"], "active");
    // Nothing to roll back to any more; queries still answer from v1.
    host.call(
        Method::POST,
        &format!("/projections/{BALANCE}/rollback"),
        None,
        None,
    )
    .await
    .expect("rollback")
    .assert_error(409, "no_previous_version");
    let deposit = ok_command(&host, "deposit", id, json!({ "amount": 1 })).await;
    let last = account(&host, id, None).await;
    assert_eq!(shape(&last), Ok(Shape::V1));
    assert_eq!(last["version"], deposit.body["version"]);
}

/// Rolls account-balance back to v1 (after a cutover to v2), asserting success.
async fn roll_back(host: &TestHost) {
    let rolled = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/rollback"),
            None,
            None,
        )
        .await
        .expect("rollback");
    assert_eq!(rolled.ok()["active"]["version"], 1, "{}", rolled.body);
}

/// A rollback is an operator's decision: it holds across a restart, though the
/// deployed plugin file is v2's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_holds_across_a_restart() {
    let host = TestHost::start(&BANK).await.expect("host starts");
    let ids = open_accounts(&host, 10, 1).await;
    cut_over_to_v2(&host).await;
    roll_back(&host).await;

    let host = host.restart().await.expect("restart");
    wait_caught_up(&host, BALANCE, 2, "standby").await;
    wait_caught_up(&host, BALANCE, 1, "active").await;
    let answer = account(&host, &ids[0], None).await;
    assert_eq!(shape(&answer), Ok(Shape::V1), "{answer}");
}

/// A retirement is an operator's decision too: the retired version must not come
/// back when the host next syncs with the plugins folder (on any deploy, the folder
/// watcher's reload, or a restart), though the deployed plugin file is still its
/// code. (Today it is built again from position 0 and, the automatic cutover no
/// longer held, takes over again: the rollback is undone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retired_version_stays_retired_when_the_plugins_change() {
    let host = TestHost::start(&BANK).await.expect("host starts");
    let ids = open_accounts(&host, 10, 1).await;
    cut_over_to_v2(&host).await;
    roll_back(&host).await;
    let retired = host
        .call(
            Method::DELETE,
            &format!("/projections/{BALANCE}/versions/2"),
            None,
            None,
        )
        .await
        .expect("retire v2");
    assert_eq!(retired.status, 204, "{}", retired.body);

    // An unrelated deploy: once its projection is listed, the sync that follows the
    // new plugins has run.
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION)
        .await;
    wait_version(&host, "poison", 1, "the new projection listed", |_| true).await;
    let list = host.projections().await.expect("statuses");
    assert_eq!(versions_of(&list, BALANCE), [1], "{list:?}");

    let host = host.restart().await.expect("restart");
    let list = host.projections().await.expect("statuses");
    assert_eq!(versions_of(&list, BALANCE), [1], "{list:?}");
    let answer = account(&host, &ids[0], None).await;
    assert_eq!(shape(&answer), Ok(Shape::V1), "{answer}");
}

// --- Manual cutover ---------------------------------------------------------------

/// Under the manual policy a caught-up v2 keeps building until promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_manual_cutover_a_caught_up_version_waits_for_promotion() {
    let host = TestHost::start(&BANK).await.expect("host starts");
    let ids = open_accounts(&host, 20, 1).await;
    let policy = host
        .set_policy(BALANCE, json!({ "cutover": "manual" }))
        .await;
    assert_eq!(
        policy,
        json!({ "cutover": "manual", "on_failure": "stop", "max_attempts": 5 })
    );
    let (status, stored) = host
        .get(&format!("/projections/{BALANCE}/policy"))
        .await
        .expect("policy");
    assert_eq!((status, &stored), (200, &policy));

    host.deploy_file(BALANCE, plugins::ACCOUNT_BALANCE_V2).await;
    // Caught up again and again while commands keep coming: still building, and
    // queries still answered by v1.
    for (turn, id) in ids.iter().enumerate().take(10) {
        let deposit = ok_command(&host, "deposit", id, json!({ "amount": 1 })).await;
        let live = wait_caught_up(&host, BALANCE, 2, "building").await;
        assert!(
            live["checkpoint"].as_u64() >= Some(position(&deposit)),
            "{live}"
        );
        assert_eq!(role(&host, BALANCE, 1).await, "active", "turn {turn}");
        assert_eq!(shape(&account(&host, id, None).await), Ok(Shape::V1));
    }

    let promoted = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/promote"),
            None,
            None,
        )
        .await
        .expect("promote");
    assert_eq!(
        promoted.ok()["active"],
        json!({ "version": 2, "generation": 1 })
    );
    assert_eq!(role(&host, BALANCE, 2).await, "active");
    assert_eq!(role(&host, BALANCE, 1).await, "standby");
    assert_eq!(shape(&account(&host, &ids[0], None).await), Ok(Shape::V2));

    // A version can be named; an unknown one is refused.
    let back = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/promote?version=1"),
            None,
            None,
        )
        .await
        .expect("promote v1");
    assert_eq!(back.ok()["active"]["version"], 1);
    assert_eq!(shape(&account(&host, &ids[0], None).await), Ok(Shape::V1));
    host.call(
        Method::POST,
        &format!("/projections/{BALANCE}/promote?version=7"),
        None,
        None,
    )
    .await
    .expect("promote v7")
    .assert_error(404, "unknown_version");
}

// --- Rebuild ----------------------------------------------------------------------

/// A rebuild builds a new generation of the active version beside it, swaps it in
/// and deletes the old one; the data is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_swaps_in_a_new_generation_with_the_same_data() {
    let host = TestHost::start(&BANK).await.expect("host starts");
    let ids = open_accounts(&host, 30, 2).await;
    let at = host.head().await.expect("head");
    let mut before = Vec::new();
    for id in &ids {
        before.push(account(&host, id, Some(at)).await);
    }
    let started = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/rebuild"),
            None,
            None,
        )
        .await
        .expect("rebuild");
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(
        started.body["building"],
        json!({ "version": 1, "generation": 2 })
    );
    eventually("the new generation to take over alone", async || {
        let list = host.projections().await.map_err(|e| e.to_string())?;
        let generations: Vec<&Value> = list.iter().filter(|p| p["name"] == BALANCE).collect();
        match generations.as_slice() {
            [only] if only["generation"] == 2 && only["role"] == "active" => Ok(()),
            _ => Err(format!("{generations:?}")),
        }
    })
    .await;
    for (id, before) in ids.iter().zip(&before) {
        assert_eq!(&account(&host, id, Some(at)).await, before, "account {id}");
    }
}

/// Accounts and deposits in the log of the promoted-rebuild test: enough events that
/// the rebuild is still under way when it is promoted.
const PROMOTED_ACCOUNTS: usize = 500;
const PROMOTED_DEPOSITS: usize = 99;

/// Promoting a rebuild before it has caught up makes it active and retires the
/// generation it replaces, as its own cut-over would: that generation's worker stops,
/// its database is deleted, and rollback has nothing to return to. (Before the
/// lifecycle became a state machine, the promotion kept the old generation's worker
/// and database and pointed rollback at a version the lifecycle no longer knew.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promoting_a_rebuild_retires_the_generation_it_replaces() {
    let dir = test_dir(&BANK).expect("folder");
    let head = append_bank_log(&data_dir(&dir), PROMOTED_ACCOUNTS, PROMOTED_DEPOSITS, "ada")
        .await
        .expect("log");
    let host = TestHost::start_configured(dir, |_| {})
        .await
        .expect("host starts");
    wait_caught_up(&host, BALANCE, 1, "active").await;
    wait_caught_up(&host, "bank-totals", 1, "active").await;
    let old_db = host
        .data_dir()
        .join("projections")
        .join(BALANCE)
        .join("v1.g1.db");
    assert!(old_db.exists(), "{old_db:?}");

    let started = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/rebuild"),
            None,
            None,
        )
        .await
        .expect("rebuild");
    assert_eq!(started.status, 202, "{}", started.body);
    let promoted = host
        .call(
            Method::POST,
            &format!("/projections/{BALANCE}/promote"),
            None,
            None,
        )
        .await
        .expect("promote");
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(
        promoted.body["active"],
        json!({ "version": 1, "generation": 2 })
    );

    let list = host.projections().await.expect("projections");
    let generations: Vec<&Value> = list.iter().filter(|p| p["name"] == BALANCE).collect();
    assert!(
        matches!(generations.as_slice(), [only] if only["generation"] == 2 && only["role"] == "active"),
        "{generations:?}"
    );
    assert!(
        !old_db.exists(),
        "the replaced generation's database is still there"
    );
    host.call(
        Method::POST,
        &format!("/projections/{BALANCE}/rollback"),
        None,
        None,
    )
    .await
    .expect("rollback")
    .assert_error(409, "no_previous_version");

    // The promoted generation goes on to build the whole read model.
    let last = account_id(PROMOTED_ACCOUNTS - 1);
    let answer = account(&host, &last, Some(head)).await;
    let total: u64 = (1..=PROMOTED_DEPOSITS as u64).sum();
    assert_eq!(answer["balance"], json!(total), "{answer}");
}

// --- Failing events -----------------------------------------------------------------

/// The poison projection (test-poison-projection): it fails on an account opened for
/// the owner "poison". test-poison-query reads what it recorded.
const POISON_HOST: [&str; 6] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
    plugins::TEST_POISON_PROJECTION,
    plugins::TEST_POISON_QUERY,
];

/// Opens account `id` for `owner`; returns the position of its `AccountOpened`.
async fn open(host: &TestHost, id: &str, owner: &str) -> u64 {
    position(&ok_command(host, "open-account", id, json!({ "owner": owner })).await)
}

/// The owners the poison projection recorded, in log order (at least as fresh as
/// `at`, if given). `params` (ignored by the handler) tell cached answers apart.
async fn poison_owners(host: &TestHost, params: &str, at: Option<u64>) -> Vec<String> {
    poison_rows(host, params, at)
        .await
        .iter()
        .map(|row| row["owner"].as_str().expect("owner").to_string())
        .collect()
}

/// The rows (`position`, `stream`, `owner`) behind [`poison_owners`].
async fn poison_rows(host: &TestHost, params: &str, at: Option<u64>) -> Vec<Value> {
    let reply = host
        .query("poison-owners", params, &at_least(at))
        .await
        .expect("query");
    reply.ok().as_array().expect("rows").clone()
}

/// The parked events of `poison`.
async fn parked(host: &TestHost) -> Vec<Value> {
    let (status, body) = host
        .get("/projections/poison/parked")
        .await
        .expect("parked");
    assert_eq!(status, 200, "{body}");
    body["parked"].as_array().expect("parked list").clone()
}

/// Policy `stop`: the projection halts at the poison event with the error visible,
/// the rest of the host carries on, and deploying the fix resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_event_halts_its_projection_until_a_fix_is_deployed() {
    let host = TestHost::start(&POISON_HOST).await.expect("host starts");
    let policy = host
        .set_policy("poison", json!({ "max_attempts": 2 }))
        .await;
    assert_eq!(policy["on_failure"], "stop");
    open(&host, "a0", "ada").await;
    open(&host, "a1", "bob").await;
    let poisoned = open(&host, "p0", "poison").await;
    open(&host, "a2", "cy").await;

    let halted = wait_version(&host, "poison", 1, "poison halted", |s| {
        s["halted"] == true && s["status"] == "failed"
    })
    .await;
    assert_eq!(halted["failed_at"], poisoned, "{halted}");
    assert_eq!(halted["checkpoint"], poisoned - 1, "{halted}");
    let error = halted["error"].as_str().expect("error");
    assert!(error.contains("poison"), "{error}");

    // Commands and the other projections carry on.
    open(&host, "a3", "dee").await;
    let deposit = ok_command(&host, "deposit", "a3", json!({ "amount": 7 })).await;
    assert_eq!(account(&host, "a3", None).await["balance"], 7);
    let totals = host
        .query("totals", "", &at_least(Some(position(&deposit))))
        .await
        .expect("totals");
    assert_eq!(totals.ok()["open_accounts"], 5, "{}", totals.body);
    assert_eq!(poison_owners(&host, "", None).await, ["ada", "bob"]);
    let still = wait_version(&host, "poison", 1, "poison still halted", |s| {
        s["halted"] == true
    })
    .await;
    assert_eq!(still["checkpoint"], poisoned - 1, "{still}");
    assert_eq!(still["failed_at"], poisoned, "{still}");

    // The fix resumes it from where it halted.
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION_FIXED)
        .await;
    let live = wait_caught_up(&host, "poison", 1, "active").await;
    assert_eq!(live["halted"], false, "{live}");
    assert!(live.get("error").is_none(), "{live}");
    assert_eq!(
        poison_owners(&host, "", Some(position(&deposit))).await,
        ["ada", "bob", "poison", "cy", "dee"]
    );
}

/// Policy `skip`: poison events are parked with their error and the projection moves
/// on; after the fix a parked event can be retried, and one can be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_events_are_parked_retried_after_the_fix_or_dropped() {
    let host = TestHost::start(&POISON_HOST).await.expect("host starts");
    let policy = host
        .set_policy("poison", json!({ "on_failure": "skip", "max_attempts": 2 }))
        .await;
    assert_eq!(policy["on_failure"], "skip");
    open(&host, "a0", "ada").await;
    let first = open(&host, "p1", "poison").await;
    open(&host, "a1", "bob").await;
    let second = open(&host, "p2", "poison").await;
    let last = open(&host, "a2", "cy").await;

    let live = wait_caught_up(&host, "poison", 1, "active").await;
    assert_eq!(live["halted"], false, "{live}");
    assert_eq!(
        poison_owners(&host, "", Some(last)).await,
        ["ada", "bob", "cy"]
    );
    let list = parked(&host).await;
    let positions: Vec<u64> = list.iter().filter_map(|p| p["position"].as_u64()).collect();
    assert_eq!(positions, [first, second], "{list:?}");
    for entry in &list {
        assert_eq!(entry["event_type"], "AccountOpened", "{entry}");
        assert!(
            entry["error"]
                .as_str()
                .is_some_and(|e| e.contains("poison")),
            "{entry}"
        );
        assert!(entry["parked_at"].as_str().is_some(), "{entry}");
    }

    // Drop one.
    let parked_path = |at: u64| format!("/projections/poison/parked/{at}");
    let dropped = host
        .call(Method::DELETE, &parked_path(second), None, None)
        .await
        .expect("drop");
    assert_eq!(dropped.status, 204, "{}", dropped.body);
    let positions: Vec<u64> = parked(&host)
        .await
        .iter()
        .filter_map(|p| p["position"].as_u64())
        .collect();
    assert_eq!(positions, [first]);
    host.call(Method::DELETE, &parked_path(second), None, None)
        .await
        .expect("drop again")
        .assert_error(404, "unknown_parked_event");

    // A retry with the faulty code fails and leaves the event parked.
    let retry = format!("{}/retry", parked_path(first));
    let failed = host
        .call(Method::POST, &retry, None, None)
        .await
        .expect("retry");
    assert_eq!(failed.status, 409, "{}", failed.body);
    assert_eq!(parked(&host).await.len(), 1);

    // After the fix, the retry applies it and it leaves the list.
    let old_digest = live["digest"].clone();
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION_FIXED)
        .await;
    wait_version(&host, "poison", 1, "the fixed code running", |s| {
        s["digest"] != old_digest && s["status"] == "live"
    })
    .await;
    let retried = host
        .call(Method::POST, &retry, None, None)
        .await
        .expect("retry");
    assert_eq!(retried.status, 204, "{}", retried.body);
    assert!(parked(&host).await.is_empty());
    // Asked with parameters of its own: a cached answer from before the retry would
    // hide it (see the next test).
    assert_eq!(
        poison_owners(&host, "after=retry", Some(last)).await,
        ["ada", "poison", "bob", "cy"]
    );
    host.call(Method::POST, &retry, None, None)
        .await
        .expect("retry again")
        .assert_error(404, "unknown_parked_event");
}

/// A retried parked event changes the read model without moving the checkpoint: a
/// query answered before the retry must not be served from the cache after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_parked_event_is_visible_to_queries_at_once() {
    let host = TestHost::start(&POISON_HOST).await.expect("host starts");
    host.set_policy("poison", json!({ "on_failure": "skip", "max_attempts": 1 }))
        .await;
    open(&host, "a0", "ada").await;
    let poisoned = open(&host, "p1", "poison").await;
    let last = open(&host, "a1", "bob").await;
    let live = wait_caught_up(&host, "poison", 1, "active").await;
    assert_eq!(poison_owners(&host, "", Some(last)).await, ["ada", "bob"]);

    let old_digest = live["digest"].clone();
    host.deploy_file("poison", plugins::TEST_POISON_PROJECTION_FIXED)
        .await;
    wait_version(&host, "poison", 1, "the fixed code running", |s| {
        s["digest"] != old_digest && s["status"] == "live"
    })
    .await;
    let retried = host
        .call(
            Method::POST,
            &format!("/projections/poison/parked/{poisoned}/retry"),
            None,
            None,
        )
        .await
        .expect("retry");
    assert_eq!(retried.status, 204, "{}", retried.body);
    assert_eq!(
        poison_owners(&host, "", Some(last)).await,
        ["ada", "poison", "bob"]
    );
}

/// Accounts in the log of the catch-up poison test, deposits per account, and one
/// account in this many opened by "poison": 8,000 events, so that the projection catches
/// up in large batches, each read while the one before it is applied, with poison
/// events at many offsets within them.
const CATCH_UP_ACCOUNTS: usize = 2_000;
const CATCH_UP_DEPOSITS: usize = 3;
const CATCH_UP_POISON_EVERY: usize = 149;

/// Failing events deep in a long log, met while catching up: the projection halts
/// exactly at the first with everything before it applied; once resumed under `skip`
/// it parks each of them and applies every other event exactly once, although the
/// batch after a failing one was read before it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_events_met_while_catching_up_halt_and_park_exactly_there() {
    let dir = test_dir(&POISON_HOST).expect("folder");
    let owners: Vec<String> = (0..CATCH_UP_ACCOUNTS)
        .map(|n| {
            if n % CATCH_UP_POISON_EVERY == 17 {
                "poison".to_string()
            } else {
                format!("owner-{n}")
            }
        })
        .collect();
    let poisons = owners.iter().filter(|o| *o == "poison").count();
    let head = append_accounts(&data_dir(&dir), &owners, CATCH_UP_DEPOSITS)
        .await
        .expect("log");
    assert_eq!(head, (CATCH_UP_ACCOUNTS * (1 + CATCH_UP_DEPOSITS)) as u64);
    let host = TestHost::start_configured(dir, |_| {})
        .await
        .expect("host starts");

    let halted = wait_version(&host, "poison", 1, "poison halted", |s| {
        s["halted"] == true && s["status"] == "failed"
    })
    .await;
    let failed_at = halted["failed_at"].as_u64().expect("failed_at");
    assert_eq!(halted["checkpoint"], failed_at - 1, "{halted}");
    let error = halted["error"].as_str().expect("error");
    assert!(error.contains("poison"), "{error}");
    // Everything before the failing event, and nothing after it.
    let rows = poison_rows(&host, "at=halt", None).await;
    assert!(
        rows.iter()
            .all(|r| r["position"].as_u64() < Some(failed_at)),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["owner"] != "poison"), "{rows:?}");

    host.set_policy("poison", json!({ "on_failure": "skip", "max_attempts": 1 }))
        .await;
    let resumed = host
        .call(Method::POST, "/projections/poison/resume", None, None)
        .await
        .expect("resume");
    assert!(resumed.status < 300, "{}", resumed.body);
    let live = wait_caught_up(&host, "poison", 1, "active").await;
    assert_eq!(live["checkpoint"], head, "{live}");

    let list = parked(&host).await;
    assert_eq!(list.len(), poisons, "{list:?}");
    assert_eq!(list[0]["position"], failed_at, "{list:?}");
    let rows = poison_rows(&host, "at=head", Some(head)).await;
    let mut streams: Vec<&str> = rows
        .iter()
        .map(|r| r["stream"].as_str().expect("stream"))
        .collect();
    streams.sort_unstable();
    let expected: Vec<String> = owners
        .iter()
        .enumerate()
        .filter(|(_, owner)| *owner != "poison")
        .map(|(n, _)| format!("account-{}", account_id(n)))
        .collect();
    assert_eq!(streams, expected);
    let parked_at: BTreeSet<u64> = list.iter().filter_map(|p| p["position"].as_u64()).collect();
    assert!(
        rows.iter()
            .all(|r| !parked_at.contains(&r["position"].as_u64().expect("position"))),
        "a parked event was applied: {list:?}"
    );
}

// --- Restart during a catch-up ------------------------------------------------------

/// Accounts in the log of the restart test, and deposits per account: enough events
/// that a catch-up takes a while, appended straight through the event store.
const RESTART_ACCOUNTS: usize = 2_000;
const RESTART_DEPOSITS: usize = 49;

/// A host restarted while v2 catches up resumes v2 from its checkpoint, with the
/// lifecycle (v1 active, v2 building, policies) as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_during_a_catch_up_resumes_from_the_checkpoint() {
    let dir = test_dir(&[plugins::BANK_ACCOUNT, plugins::ACCOUNT_BALANCE]).expect("folder");
    let log_head = append_bank_log(&data_dir(&dir), RESTART_ACCOUNTS, RESTART_DEPOSITS, "ada")
        .await
        .expect("log");
    assert_eq!(log_head, (RESTART_ACCOUNTS * (1 + RESTART_DEPOSITS)) as u64);
    let host = TestHost::start_configured(dir, |_| {})
        .await
        .expect("host starts");
    wait_caught_up(&host, BALANCE, 1, "active").await;
    let policy = host
        .set_policy(BALANCE, json!({ "on_failure": "skip", "max_attempts": 3 }))
        .await;

    host.deploy_file(BALANCE, plugins::ACCOUNT_BALANCE_V2).await;
    let midway = wait_version(&host, BALANCE, 2, "v2 midway through its catch-up", |s| {
        let at = s["checkpoint"].as_u64().unwrap_or(0);
        assert!(
            at < log_head,
            "v2 caught up before it was seen midway; make the log longer: {s}"
        );
        at > 0
    })
    .await;
    assert_eq!(midway["role"], "building");
    // The last checkpoint seen before the restart.
    let list = host.projections().await.expect("statuses");
    let before = version_of(&list, BALANCE, 2).expect("v2")["checkpoint"]
        .as_u64()
        .expect("checkpoint");
    assert!(before < log_head, "v2 caught up too soon: {list:?}");

    let host = host.restart().await.expect("restart");
    let list = host.projections().await.expect("statuses");
    let v2 = version_of(&list, BALANCE, 2).expect("v2 after the restart");
    let first = v2["checkpoint"].as_u64().expect("checkpoint");
    assert!(
        first >= before,
        "v2 reported checkpoint {first} after the restart, below {before} before it: {v2}"
    );
    assert_eq!(v2["role"], "building", "{v2}");
    assert_eq!(version_of(&list, BALANCE, 1).expect("v1")["role"], "active");
    let (status, kept) = host
        .get(&format!("/projections/{BALANCE}/policy"))
        .await
        .expect("policy");
    assert_eq!((status, &kept), (200, &policy));

    let done = wait_caught_up(&host, BALANCE, 2, "active").await;
    let applied = done["events_applied"].as_u64().expect("events_applied");
    assert!(
        applied <= log_head - before,
        "v2 applied {applied} events after the restart: more than the {} after its checkpoint",
        log_head - before
    );
}

// --- The admin guard -----------------------------------------------------------------

/// With an admin token configured, every lifecycle change needs it; reading the
/// status, a policy and the parked events does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_changes_need_the_admin_token_when_one_is_configured() {
    const TOKEN: &str = "lifecycle-secret";
    let dir = test_dir(&[plugins::BANK_ACCOUNT, plugins::ACCOUNT_BALANCE]).expect("folder");
    let host = TestHost::start_configured(dir, |config| {
        config.admin_token = Some(TOKEN.to_string());
    })
    .await
    .expect("host starts");
    wait_caught_up(&host, BALANCE, 1, "active").await;
    let p = |rest: &str| format!("/projections/{BALANCE}{rest}");
    let changes = [
        (Method::POST, p("/promote"), None),
        (Method::POST, p("/promote?version=1"), None),
        (Method::POST, p("/rollback"), None),
        (Method::POST, p("/rebuild"), None),
        (Method::POST, p("/resume"), None),
        (Method::DELETE, p("/versions/1"), None),
        (
            Method::PUT,
            p("/policy"),
            Some(json!({ "cutover": "manual" })),
        ),
        (Method::POST, p("/parked/1/retry"), None),
        (Method::DELETE, p("/parked/1"), None),
    ];
    for (method, path, body) in &changes {
        for token in [None, Some("wrong")] {
            let reply = host
                .call(method.clone(), path, body.as_ref(), token)
                .await
                .expect("request");
            assert_eq!(
                reply.status, 401,
                "{method} {path} with {token:?}: {}",
                reply.body
            );
            reply.assert_error(401, "unauthorized");
        }
    }
    // Nothing changed.
    let (status, policy) = host.get(&p("/policy")).await.expect("policy");
    assert_eq!(status, 200);
    assert_eq!(policy["cutover"], "auto");
    let (status, _) = host.get(&p("/parked")).await.expect("parked");
    assert_eq!(status, 200);
    let list = host.projections().await.expect("statuses");
    assert_eq!(versions_of(&list, BALANCE), [1]);
    assert_eq!(version_of(&list, BALANCE, 1).expect("v1")["generation"], 1);

    // With the token they go through.
    let changed = host
        .call(
            Method::PUT,
            &p("/policy"),
            Some(&json!({ "cutover": "manual" })),
            Some(TOKEN),
        )
        .await
        .expect("policy");
    assert_eq!(changed.ok()["cutover"], "manual");
    let rebuild = host
        .call(Method::POST, &p("/rebuild"), None, Some(TOKEN))
        .await
        .expect("rebuild");
    assert_eq!(rebuild.status, 202, "{}", rebuild.body);
}
