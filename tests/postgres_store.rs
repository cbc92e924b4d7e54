//! The PostgreSQL event store through real boundaries: `tessera serve --store
//! postgres://...` processes serving the Rust bank plugins over HTTP, on a fresh
//! database of the test server each (`make postgres`, or `TESSERA_TEST_POSTGRES`; an
//! unreachable server fails the test). Appends, conflicts, idempotency and reads on
//! one host; three hosts on one database racing on shared accounts; a query on one
//! host at the position of a command on another; a host SIGKILLed under load; a
//! plugin deployed on one host served by all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::common::binary::Binary;
use crate::common::crash::{BANK_PLUGIN_NAMES, BANK_PLUGINS};
use crate::common::postgres::fresh_database;
use crate::common::read_side::Ledger;
use crate::common::{Api, Reply, TestHost, eventually, plugins};

/// A host in this process with its log in a fresh PostgreSQL database.
async fn bank_host() -> TestHost {
    let url = fresh_database().await;
    TestHost::start_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ],
        move |config| config.store = tessera::StoreChoice::Postgres(url),
    )
    .await
    .expect("host starts")
}

fn body(id: &str, payload: Value) -> Value {
    json!({ "aggregate_id": id, "payload": payload })
}

async fn send(api: &Api, name: &str, id: &str, payload: Value, headers: &[(&str, &str)]) -> Reply {
    api.send(name, &body(id, payload), headers)
        .await
        .expect("request sent")
}

/// The versions of a stream's events, in order.
fn versions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_conflicts_idempotency_and_reads_go_through_postgres() {
    let host = bank_host().await;
    let opened = send(&host, "open-account", "a1", json!({"owner": "ada"}), &[]).await;
    assert_eq!(opened.ok()["version"], 1);
    send(&host, "open-account", "a1", json!({"owner": "ada"}), &[])
        .await
        .assert_error(422, "rejected");

    let deposited = send(&host, "deposit", "a1", json!({"amount": 5}), &[]).await;
    assert_eq!(deposited.ok()["version"], 2);

    // A stale If-Match is a 409 with the stream's actual version.
    let stale = send(
        &host,
        "deposit",
        "a1",
        json!({"amount": 1}),
        &[("if-match", "\"1\"")],
    )
    .await;
    stale.assert_error(409, "conflict");
    assert_eq!(
        stale.body["error"]["details"],
        json!({"stream": "account-a1", "expected": 1, "actual": 2})
    );

    // An idempotency key replays the first result, however often it is sent and
    // even after a restart; a key reused for another command is refused.
    let key = [("idempotency-key", "pg-key-1")];
    let first = send(&host, "deposit", "a1", json!({"amount": 7}), &key).await;
    let again = send(&host, "deposit", "a1", json!({"amount": 7}), &key).await;
    assert_eq!(first.ok(), again.ok());
    assert_eq!(first.ok()["version"], 3);
    send(&host, "deposit", "a1", json!({"amount": 8}), &key)
        .await
        .assert_error(422, "idempotency_mismatch");

    // Concurrent requests with one key append once.
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let api = host.api().clone();
        tasks.spawn(async move {
            send(
                &api,
                "deposit",
                "a1",
                json!({"amount": 1}),
                &[("idempotency-key", "pg-key-2")],
            )
            .await
        });
    }
    let mut answers = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        answers.push(reply.unwrap().ok().clone());
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");

    let events = host.read_stream("account-a1").await.unwrap();
    assert_eq!(versions(&events), vec![1, 2, 3, 4]);
    let log = host.read_log().await.unwrap();
    let positions: Vec<u64> = log
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![1, 2, 3, 4]);
    assert_eq!(host.head().await.unwrap(), 4);

    // The read side follows: the inline projection answers at the last position.
    let account = host.query_at("account", "id=a1", 4).await.unwrap();
    assert_eq!(account.ok()["balance"], 13, "{}", account.body);

    // A restart on the same database keeps streams and keys.
    let host = host.restart().await.unwrap();
    let replayed = send(&host, "deposit", "a1", json!({"amount": 7}), &key).await;
    assert_eq!(replayed.ok(), first.ok());
    assert_eq!(
        send(&host, "deposit", "a1", json!({"amount": 2}), &[])
            .await
            .ok()["version"],
        5
    );
    assert_eq!(host.head().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_the_start_with_its_reason() {
    // Nothing listens on port 1: the host must refuse to start, not serve without a log.
    let dir = crate::common::test_dir(&[plugins::BANK_ACCOUNT]).unwrap();
    let log = dir.path().join("tessera.log");
    let started = Binary::start(
        &dir.path().join("data"),
        &dir.path().join("plugins"),
        &log,
        &[
            "--store",
            "postgres://tessera@127.0.0.1:1/nothing?connect_timeout=2",
        ],
    )
    .await;
    assert!(started.is_err(), "no host without its database");
    // The reason is in the log (whose tail may be a backtrace).
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("cannot connect to PostgreSQL"), "{output}");
}

/// A folder per host (own data) around one shared plugins folder.
struct Cluster {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    plugins: std::path::PathBuf,
    store: String,
}

impl Cluster {
    /// A fresh database, and a plugins folder holding the bank plugins named as
    /// `PUT /plugins/{name}` writes them, but only those in `names`.
    async fn new(names: &[&str]) -> Cluster {
        let dir = tempfile::TempDir::new().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for (plugin, name) in BANK_PLUGINS.iter().zip(BANK_PLUGIN_NAMES) {
            if names.contains(&name) {
                std::fs::copy(plugin, plugins.join(format!("{name}.wasm"))).unwrap();
            }
        }
        Cluster {
            root: dir.path().to_path_buf(),
            _dir: dir,
            plugins,
            store: fresh_database().await,
        }
    }

    /// Starts host `name` (its own data folder and log) on the shared database and
    /// plugins folder.
    async fn start(&self, name: &str) -> Binary {
        let data = self.root.join(format!("data-{name}"));
        let log = self.root.join(format!("{name}.log"));
        Binary::start(&data, &self.plugins, &log, &["--store", &self.store])
            .await
            .unwrap_or_else(|e| panic!("host {name} starts: {e:#}"))
    }
}

/// Deposits of 1 into `accounts`, round robin, from `clients` tasks on `api`, until
/// `stop`; returns the deposits acknowledged (2xx) per account, and every other
/// answer's code.
fn spawn_load(
    tasks: &mut JoinSet<(BTreeMap<String, u64>, Vec<String>)>,
    api: &Api,
    accounts: &[String],
    clients: usize,
    stop: Arc<AtomicBool>,
    limit: usize,
) {
    for client in 0..clients {
        let (api, accounts, stop) = (api.clone(), accounts.to_vec(), stop.clone());
        tasks.spawn(async move {
            let mut acknowledged = BTreeMap::new();
            let mut refused = Vec::new();
            for n in 0..limit {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = &accounts[(client + n) % accounts.len()];
                match api.command("deposit", id, json!({"amount": 1})).await {
                    Ok(reply) if (200..300).contains(&reply.status) => {
                        *acknowledged.entry(id.clone()).or_insert(0) += 1;
                    }
                    Ok(reply) => {
                        refused.push(format!("{} {}", reply.status, reply.body["error"]["code"]))
                    }
                    // The host was killed under the request: not acknowledged.
                    Err(error) => refused.push(format!("transport: {error}")),
                }
            }
            (acknowledged, refused)
        });
    }
}

/// Sums the acknowledged deposits of every task.
async fn collect(
    mut tasks: JoinSet<(BTreeMap<String, u64>, Vec<String>)>,
) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut acknowledged = BTreeMap::new();
    let mut refused = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (acks, other) = done.expect("load task");
        for (id, count) in acks {
            *acknowledged.entry(id).or_insert(0) += count;
        }
        refused.extend(other);
    }
    (acknowledged, refused)
}

/// Checks the log against the deposits acknowledged: every stream's versions are
/// 1..=n without gaps, positions are 1..=head without gaps, and each account holds
/// at least what was acknowledged (exactly, when `exact`: no request was cut off).
fn check_log(log: &[Value], acknowledged: &BTreeMap<String, u64>, exact: bool) -> Ledger {
    let positions: Vec<u64> = log
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=log.len() as u64).collect::<Vec<_>>(),
        "positions have gaps"
    );
    let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in log {
        streams
            .entry(event["stream"].as_str().unwrap())
            .or_default()
            .push(event["version"].as_u64().unwrap());
    }
    for (stream, versions) in &streams {
        assert_eq!(
            *versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "{stream}'s versions have gaps"
        );
    }
    let ledger = Ledger::from_log(log, u64::MAX).unwrap();
    let balances = ledger.balances();
    for (id, count) in acknowledged {
        let balance = *balances.get(id).unwrap_or(&0) as u64;
        if exact {
            assert_eq!(balance, *count, "account {id}: lost or invented deposits");
        } else {
            assert!(
                balance >= *count,
                "account {id}: {balance} < {count} acknowledged"
            );
        }
    }
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_on_one_database_lose_no_update_and_share_positions_and_plugins() {
    // bank-queries is deployed later through one host, to show the others serve it.
    let cluster = Cluster::new(&["bank-account", "account-balance", "bank-totals"]).await;
    let hosts = [
        cluster.start("a").await,
        cluster.start("b").await,
        cluster.start("c").await,
    ];
    let accounts: Vec<String> = (0..4).map(|n| format!("shared{n}")).collect();
    for id in &accounts {
        hosts[0]
            .command("open-account", id, json!({"owner": "ada"}))
            .await
            .unwrap()
            .ok();
    }

    // Concurrent deposits on the same accounts from every host: their appends race
    // in the database, and a loser must decide again, never overwrite.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for host in &hosts {
        spawn_load(&mut tasks, host, &accounts, 4, stop.clone(), 40);
    }
    let (acknowledged, refused) = collect(tasks).await;
    // Under contention a host may give up after its retries (503 contended); any
    // other refusal is a bug.
    assert!(
        refused.iter().all(|r| r == "503 \"contended\""),
        "unexpected answers: {refused:?}"
    );
    let total: u64 = acknowledged.values().sum();
    assert!(total > 0);
    let log = hosts[1].read_log().await.unwrap();
    check_log(&log, &acknowledged, true);
    for host in &hosts[1..] {
        assert_eq!(host.read_log().await.unwrap(), log);
    }

    // Every host follows every host's commits: each reports the same head.
    let head = log.len() as u64;
    for host in &hosts {
        eventually("every host at the shared head", async || {
            match host.head().await {
                Ok(seen) if seen == head => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    // A plugin deployed on one host is served by all: each watches the shared folder.
    hosts[0]
        .deploy_file("bank-queries", plugins::BANK_QUERIES)
        .await;
    // A command on host A, then a query on host B (and C) at its position sees it.
    let reply = hosts[0]
        .command("deposit", "shared0", json!({"amount": 1000}))
        .await
        .unwrap();
    let position = reply.ok()["position"].as_u64().unwrap();
    let expected = acknowledged.get("shared0").copied().unwrap_or(0) + 1000;
    for host in &hosts[1..] {
        // The other hosts load the plugin when their watcher sees the file.
        let answer = eventually("the deployed query served", async || {
            let answer = host
                .query_at("account", "id=shared0", position)
                .await
                .map_err(|e| e.to_string())?;
            match answer.body["error"]["code"].as_str() {
                Some("unknown_query") => Err(answer.body.to_string()),
                _ => Ok(answer),
            }
        })
        .await;
        assert_eq!(answer.ok()["balance"], expected, "{}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_killed_under_load_loses_no_acknowledged_command_and_catches_up() {
    let cluster = Cluster::new(&BANK_PLUGIN_NAMES).await;
    let mut victim = cluster.start("victim").await;
    let survivor = cluster.start("survivor").await;
    let accounts: Vec<String> = (0..6).map(|n| format!("k{n}")).collect();
    for id in &accounts {
        survivor
            .command("open-account", id, json!({"owner": "bo"}))
            .await
            .unwrap()
            .ok();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut victim_tasks = JoinSet::new();
    spawn_load(
        &mut victim_tasks,
        &victim,
        &accounts,
        4,
        stop.clone(),
        10_000,
    );
    let survivor_stop = Arc::new(AtomicBool::new(false));
    let mut survivor_tasks = JoinSet::new();
    spawn_load(
        &mut survivor_tasks,
        &survivor,
        &accounts,
        2,
        survivor_stop.clone(),
        10_000,
    );
    // Let the load run until the log has grown, then kill the victim mid-flight.
    eventually("the load under way", async || match survivor.head().await {
        Ok(head) if head > 150 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    victim.sigkill();
    stop.store(true, Ordering::Relaxed);
    let (victim_acks, _cut_off) = collect(victim_tasks).await;
    assert!(
        victim_acks.values().sum::<u64>() > 0,
        "the victim acknowledged nothing before the kill"
    );
    // The survivor keeps serving while the victim is down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    survivor_stop.store(true, Ordering::Relaxed);
    let (survivor_acks, refused) = collect(survivor_tasks).await;
    assert!(
        refused.iter().all(|r| r == "503 \"contended\""),
        "the survivor answered {refused:?}"
    );

    let mut acknowledged = victim_acks;
    for (id, count) in survivor_acks {
        *acknowledged.entry(id).or_insert(0) += count;
    }
    // Every acknowledged deposit is in the log; a request cut off by the kill may have
    // committed unacknowledged, so the balance may be higher, never lower.
    let log = survivor.read_log().await.unwrap();
    let ledger = check_log(&log, &acknowledged, false);

    // The restarted victim catches its read models up with what it missed.
    let data = cluster.root.join("data-victim");
    let victim = Binary::start(
        &data,
        &cluster.plugins,
        &victim.log,
        &["--store", &cluster.store],
    )
    .await
    .expect("the victim restarts");
    let head = log.len() as u64;
    let balances = ledger.balances();
    for id in &accounts {
        let answer = victim
            .query_at("account", &format!("id={id}"), head)
            .await
            .unwrap();
        assert_eq!(
            answer.ok()["balance"],
            json!(balances.get(id).copied().unwrap_or(0)),
            "{id}: {}",
            answer.body
        );
    }
    let totals = victim.query_at("totals", "", head).await.unwrap();
    assert_eq!(
        totals.ok()["total_balance"],
        json!(ledger.total_balance()),
        "{}",
        totals.body
    );
}

/// A TCP proxy in front of the test server, which the test can cut (every connection
/// through it dropped, new ones refused) and restore: the database lost and found
/// again, as a host sees it, without stopping the server other tests share.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(server: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accepting = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    // Refused: closed at once.
                    continue;
                }
                let mut cuts = cuts.clone();
                // Only a cut after this connection was made ends it.
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, open, cut }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_database_is_503_store_unavailable_and_the_host_recovers() {
    let database = fresh_database().await;
    // The same database, reached through the proxy.
    let config: tokio_postgres::Config = database.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let server = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .unwrap()
                .next()
                .unwrap()
        }
        other => panic!("the test server must be reached over TCP, not {other:?}"),
    };
    let proxy = Proxy::start(server).await;
    let through = format!(
        "postgres://{}@127.0.0.1:{}/{}?connect_timeout=2",
        config.get_user().unwrap_or("postgres"),
        proxy.port,
        config.get_dbname().unwrap()
    );
    let host = TestHost::start_with(&[plugins::BANK_ACCOUNT], move |config| {
        config.store = tessera::StoreChoice::Postgres(through)
    })
    .await
    .unwrap();
    send(&host, "open-account", "lost", json!({"owner": "ada"}), &[])
        .await
        .ok();

    proxy.cut();
    // Commands and log reads fail as the database's unavailability, a 503 to retry.
    let deposit = send(&host, "deposit", "lost", json!({"amount": 1}), &[]).await;
    deposit.assert_error(503, "store_unavailable");
    assert!(deposit.header("retry-after").is_some());
    let (status, body) = host.get("/events?after=0").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");

    // Once the database is back, the host serves again without a restart.
    proxy.restore();
    let version = eventually("commands accepted again", async || {
        let reply = send(&host, "deposit", "lost", json!({"amount": 2}), &[]).await;
        match reply.status {
            200 => Ok(reply.body["version"].as_u64().unwrap()),
            _ => Err(reply.body.to_string()),
        }
    })
    .await;
    assert_eq!(version, 2);
    let events = host.read_stream("account-lost").await.unwrap();
    assert_eq!(versions(&events), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_refused_when_the_log_is_in_postgres() {
    let url = fresh_database().await;
    let host = TestHost::start_with(&[plugins::BANK_ACCOUNT], move |config| {
        config.store = tessera::StoreChoice::Postgres(url);
        config.admin_token = Some("admin-secret".into());
    })
    .await
    .unwrap();
    let dest = tempfile::TempDir::new().unwrap();
    let body = json!({ "dest": dest.path().join("copy") });
    let reply = host
        .call(
            reqwest::Method::POST,
            "/admin/backup",
            Some(&body),
            Some("admin-secret"),
        )
        .await
        .unwrap();
    // A copy of the data folder would hold read models without their log: refused,
    // pointing at pg_dump, and nothing is written.
    reply.assert_error(501, "backup_unsupported");
    assert!(!dest.path().join("copy").exists());
}
