//! Projections survive being killed mid-batch. The real `tessera` binary serves the
//! bank while thousands of commands arrive concurrently (each with an idempotency
//! key); it is SIGKILLed three times while projection batches are in flight and
//! restarted on the same data folder each time. When it is live at the head again,
//! its read models must equal those of a second host that rebuilt them from position 0
//! out of a copy of the events database alone, and both must equal what the log says:
//! no event applied twice, none skipped.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::plugins;
use crate::common::read_side::Ledger;
use serde_json::{Value, json};

const PLUGINS: [&str; 4] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
];
const PROJECTIONS: [&str; 2] = ["account-balance", "bank-totals"];
const ACCOUNTS: usize = 40;
const ROUNDS: usize = 3;
const PER_ROUND: usize = 1500;
const CLIENTS: usize = 16;

/// A command with its idempotency key: resent with the same key until acknowledged.
#[derive(Debug, Clone)]
struct Cmd {
    key: String,
    name: &'static str,
    body: Value,
}

/// What the clients share: the commands left to send, and the answers so far.
#[derive(Debug, Default)]
struct Work {
    queue: Mutex<VecDeque<Cmd>>,
    /// Final status per key, once a response came back.
    acknowledged: Mutex<BTreeMap<String, u16>>,
    acked: AtomicUsize,
}

impl Work {
    fn push(&self, commands: impl IntoIterator<Item = Cmd>) {
        self.queue.lock().expect("queue").extend(commands);
    }

    fn pending(&self) -> usize {
        self.queue.lock().expect("queue").len()
    }
}

/// Sends commands from the queue until it is empty or the host is gone. A command
/// whose response never came (the process died under it) goes back on the queue, to
/// be resent with the same key after the restart.
async fn client(work: Arc<Work>, client: reqwest::Client, url: String) {
    loop {
        let Some(cmd) = work.queue.lock().expect("queue").pop_front() else {
            return;
        };
        let mut answered = None;
        for _ in 0..20 {
            let sent = client
                .post(format!("{url}/commands/{}", cmd.name))
                .header("idempotency-key", &cmd.key)
                .json(&cmd.body)
                .send()
                .await;
            match sent {
                // Busy (contended, shutting down): the same key again, later.
                Ok(response) if response.status() == 503 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    // The body must arrive too: a response cut short is no answer.
                    if response.bytes().await.is_ok() {
                        answered = Some(status);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        match answered {
            Some(status) => {
                work.acknowledged
                    .lock()
                    .expect("acknowledged")
                    .insert(cmd.key.clone(), status);
                work.acked.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                work.push([cmd]);
                return;
            }
        }
    }
}

fn spawn_clients(work: &Arc<Work>, host: &Binary) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| tokio::spawn(client(work.clone(), host.client.clone(), host.url.clone())))
        .collect()
}

fn account(i: usize) -> String {
    format!("crash-{i:02}")
}

/// A round's commands: mostly deposits, some withdrawals (a few refused for lack of
/// funds, which appends nothing).
fn round_commands(round: usize, rng: &mut fastrand::Rng) -> Vec<Cmd> {
    (0..PER_ROUND)
        .map(|n| {
            let id = account(rng.usize(..ACCOUNTS));
            let (name, amount) = if rng.u8(..4) == 0 {
                ("withdraw", rng.u64(1..=150))
            } else {
                ("deposit", rng.u64(1..=100))
            };
            Cmd {
                key: format!("round-{round}-{n}"),
                name,
                body: json!({ "aggregate_id": id, "payload": { "amount": amount } }),
            }
        })
        .collect()
}

/// Copies the events database (with its WAL and shared-memory files, if any) into
/// `to`, and nothing else: the projections there start from nothing.
fn copy_events_db(from: &Path, to: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).expect("data copy folder");
    let mut copied = Vec::new();
    for name in ["events.db", "events.db-wal", "events.db-shm"] {
        let source = from.join(name);
        if source.exists() {
            std::fs::copy(&source, to.join(name)).expect("copy");
            copied.push(to.join(name));
        }
    }
    copied
}

async fn json_of(host: &Binary, name: &str, query: &str, position: u64) -> Value {
    let reply = host.query_at(name, query, position).await.expect("query");
    assert_eq!(reply.status, 200, "{name}?{query}: {}", reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_batch_the_projections_resume_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).expect("plugins folder");
    for plugin in PLUGINS {
        let name = Path::new(plugin).file_name().expect("file name");
        std::fs::copy(plugin, plugins_dir.join(name)).expect("copy plugin");
    }
    let data = dir.path().join("data");
    let log = dir.path().join("tessera.log");
    let mut host = Binary::start(&data, &plugins_dir, &log, &[])
        .await
        .expect("tessera starts");

    // The accounts first, with nothing killed under them.
    let work = Arc::new(Work::default());
    work.push((0..ACCOUNTS).map(|i| Cmd {
        key: format!("open-{i}"),
        name: "open-account",
        body: json!({ "aggregate_id": account(i), "payload": { "owner": format!("owner {i}") } }),
    }));
    for task in spawn_clients(&work, &host) {
        task.await.expect("client");
    }
    assert_eq!(work.pending(), 0, "the accounts were not all opened");

    let mut rng = fastrand::Rng::with_seed(0x7e55e7a);
    let mut lag_seen_at_kill = Vec::new();
    for round in 0..ROUNDS {
        let before = work.acked.load(Ordering::SeqCst);
        work.push(round_commands(round, &mut rng));
        let clients = spawn_clients(&work, &host);
        // Rounds 0 and 1: kill somewhere in the middle of the traffic. The last round:
        // right after the last command is acknowledged, while the async projection is
        // likely still applying its batches.
        let kill_after = if round + 1 < ROUNDS {
            before + PER_ROUND * rng.usize(30..=80) / 100
        } else {
            usize::MAX
        };
        for _ in 0..120_000 {
            if work.acked.load(Ordering::SeqCst) >= kill_after
                || clients.iter().all(|c| c.is_finished())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Ok(statuses) = host.projections().await {
            let lag: u64 = statuses
                .iter()
                .filter_map(|p| p["lag_events"].as_u64())
                .sum();
            lag_seen_at_kill.push(lag);
        }
        host.sigkill();
        for client in clients {
            client.await.expect("client");
        }
        host = Binary::start(&data, &plugins_dir, &log, &[])
            .await
            .expect("tessera restarts after a kill");
    }

    // Whatever was in flight at a kill is resent with its key: replayed if it was
    // committed, executed if not.
    for client in spawn_clients(&work, &host) {
        client.await.expect("client");
    }
    assert_eq!(
        work.pending(),
        0,
        "commands left unsent; log:\n{}",
        host.log_tail()
    );
    let acknowledged = work.acknowledged.lock().expect("acknowledged").clone();
    assert_eq!(acknowledged.len(), ACCOUNTS + ROUNDS * PER_ROUND);
    let unexpected: Vec<_> = acknowledged
        .iter()
        .filter(|(_, status)| ![200, 422].contains(*status))
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");

    let statuses = host
        .wait_live(&PROJECTIONS)
        .await
        .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", host.log_tail()));
    let head = host.head().await.expect("head");
    assert!(statuses.iter().all(|p| p["checkpoint"] == head));

    // The log: every acknowledged success appended exactly one event, nothing else did.
    let events = host.read_log().await.expect("log");
    assert_eq!(events.len() as u64, head);
    let successes = acknowledged.values().filter(|s| **s == 200).count();
    assert_eq!(
        events.len(),
        successes,
        "events in the log vs commands that succeeded"
    );
    let ledger = Ledger::from_log(&events, head).expect("ledger");
    assert_eq!(ledger.accounts.len(), ACCOUNTS);

    // A second host rebuilds every read model from position 0 out of a copy of the
    // events database alone. The first is killed for the copy, so the files are still.
    host.sigkill();
    let rebuilt_data = dir.path().join("rebuilt");
    let copied = copy_events_db(&data, &rebuilt_data);
    assert!(
        !copied.is_empty(),
        "no events database in {}",
        data.display()
    );
    assert!(!rebuilt_data.join("projections").exists());
    let host = Binary::start(&data, &plugins_dir, &log, &[])
        .await
        .expect("tessera restarts");
    let rebuilt = Binary::start(
        &rebuilt_data,
        &plugins_dir,
        &dir.path().join("rebuilt.log"),
        &[],
    )
    .await
    .expect("the rebuilding host starts");
    host.wait_live(&PROJECTIONS)
        .await
        .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", host.log_tail()));
    let rebuilt_statuses = rebuilt
        .wait_live(&PROJECTIONS)
        .await
        .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", rebuilt.log_tail()));
    assert_eq!(rebuilt.head().await.expect("head"), head);
    // The rebuild applied each event once (every event is one both projections take).
    for p in &rebuilt_statuses {
        assert_eq!(p["events_applied"], head, "{p}");
    }

    // Every account, walked page by page and asked one by one, on both hosts.
    let walked = host.all_accounts(9, head).await.expect("walk");
    let rebuilt_walk = rebuilt
        .all_accounts(9, head)
        .await
        .expect("walk the rebuild");
    assert_eq!(walked, rebuilt_walk, "the accounts differ from a rebuild");
    let balances: BTreeMap<String, i64> = walked
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_string(),
                a["balance"].as_i64().expect("balance"),
            )
        })
        .collect();
    assert_eq!(
        balances,
        ledger.balances(),
        "the balances differ from the log"
    );
    for (id, (owner, balance, version)) in &ledger.accounts {
        let query = format!("id={id}");
        let here = json_of(&host, "account", &query, head).await;
        let there = json_of(&rebuilt, "account", &query, head).await;
        assert_eq!(here, there, "account {id}");
        assert_eq!(here["owner"], owner.as_str(), "{here}");
        assert_eq!(here["balance"], *balance, "{here}");
        assert_eq!(here["version"], *version, "{here}");
    }

    let totals = json_of(&host, "totals", "", head).await;
    let rebuilt_totals = json_of(&rebuilt, "totals", "", head).await;
    assert_eq!(totals, rebuilt_totals, "the totals differ from a rebuild");
    assert_eq!(totals["open_accounts"], ACCOUNTS, "{totals}");
    assert_eq!(totals["total_balance"], ledger.total_balance(), "{totals}");
    let days: BTreeMap<String, (i64, i64, i64, i64)> = totals["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| {
            let n = |field: &str| d[field].as_i64().expect("number");
            (
                d["day"].as_str().expect("day").to_string(),
                (
                    n("deposits"),
                    n("deposit_count"),
                    n("withdrawals"),
                    n("withdrawal_count"),
                ),
            )
        })
        .collect();
    assert_eq!(days, ledger.days, "{totals}");

    eprintln!("projection lag seen just before each kill: {lag_seen_at_kill:?}");
}
