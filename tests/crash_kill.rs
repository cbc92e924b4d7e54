//! Crashes of the real binary under load. Clients deposit concurrently, each command
//! with its own Idempotency-Key; the process is SIGKILLed at seeded random moments and
//! restarted on the same data folder; a client whose request failed for want of a
//! connection sends it again, with the same key, to the restarted host. Then:
//! - every acknowledged command is in the log exactly once, at the position its
//!   acknowledgement named, with the command id it named; retries appended nothing
//!   (the log holds one event per acknowledged key, plus the opens);
//! - a SIGKILLed run is seen as unclean by the next (the `RUNNING` marker is left
//!   behind, and the next run checks its stores), a SIGTERMed run as clean: requests
//!   in flight complete, the exit status is success, the marker is removed;
//! - every read model equals a fresh rebuild from a copy of the log alone.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::hardening::{Binary, Prng};
use common::read_side::{Ledger, all_accounts, head, query_at, read_log, wait_live};
use common::{Reply, plugins};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinSet;

/// The seed of the kill schedule and of the clients' choices.
const SEED: u64 = 0x5EED_C4A5;
/// How many times the process is SIGKILLed, unless `TESSERA_CRASH_KILLS` says.
const KILLS: usize = 30;
/// Concurrent clients, each sending one command at a time.
const CLIENTS: usize = 4;
/// Accounts the clients deposit into.
const ACCOUNTS: usize = 8;
/// The longest one command may take to be acknowledged, retries and restarts
/// included.
const ACK_BOUND: Duration = Duration::from_secs(120);
/// What the log says when a run finds the `RUNNING` marker of a run that did not stop.
const UNCLEAN: &str = "the last run did not stop cleanly";
/// The bank's read models.
const PROJECTIONS: [&str; 2] = ["account-balance", "bank-totals"];

/// The host's current URL: it changes with every restart.
#[derive(Debug, Clone)]
struct Target(Arc<RwLock<String>>);

impl Target {
    fn get(&self) -> String {
        self.0.read().expect("url lock").clone()
    }

    fn set(&self, url: &str) {
        *self.0.write().expect("url lock") = url.to_string();
    }
}

/// A command a client sent, and what acknowledged it.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    account: String,
    amount: u64,
    /// The log position the acknowledgement named.
    position: u64,
    /// The command id on the acknowledged event.
    command_id: String,
    /// Acknowledged as a replay of an earlier attempt (`Idempotent-Replayed`).
    replayed: bool,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientReport {
    acks: Vec<Ack>,
    /// Attempts that failed for want of a connection (and were sent again).
    connection_failures: usize,
    /// Answers no client should ever get.
    unexpected: Vec<String>,
}

/// The folders of one run: the plugins, the data, a log.
struct Folders {
    _dir: TempDir,
    data: PathBuf,
    plugins: PathBuf,
    log: PathBuf,
}

fn folders() -> Result<Folders> {
    let dir = TempDir::new()?;
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    for plugin in [
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES,
    ] {
        let name = Path::new(plugin).file_name().context("file name")?;
        std::fs::copy(plugin, plugins_dir.join(name))?;
    }
    Ok(Folders {
        data: dir.path().join("data"),
        log: dir.path().join("tessera.log"),
        plugins: plugins_dir,
        _dir: dir,
    })
}

/// Sends command `name` with `key` until a host acknowledges it, across failed
/// connections and restarts. Returns the acknowledgement.
async fn send_until_acknowledged(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    body: &Value,
    key: &str,
    report: &mut ClientReport,
) -> Result<Reply> {
    let start = Instant::now();
    loop {
        ensure!(
            start.elapsed() < ACK_BOUND,
            "{key} was never acknowledged within {ACK_BOUND:?}"
        );
        let request = client
            .post(format!("{}/commands/{name}", target.get()))
            .header("idempotency-key", key)
            .json(body);
        match request.send().await {
            Ok(response) => match Reply::read(response).await {
                Ok(reply) if reply.status == 200 => return Ok(reply),
                // The host is stopping: the command was not taken; send it again.
                Ok(reply)
                    if reply.status == 503 && reply.body["error"]["code"] == "shutting_down" => {}
                Ok(reply) => report
                    .unexpected
                    .push(format!("{key}: {} {}", reply.status, reply.body)),
                // The body was cut off: the process died while answering.
                Err(_) => report.connection_failures += 1,
            },
            Err(_) => report.connection_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Turns a deposit's acknowledgement into an [`Ack`].
fn ack(key: &str, account: &str, amount: u64, reply: &Reply) -> Result<Ack> {
    let body = &reply.body;
    let events = body["events"].as_array().context("events")?;
    ensure!(events.len() == 1, "{key}: one event per deposit: {body}");
    Ok(Ack {
        key: key.to_string(),
        account: account.to_string(),
        amount,
        position: body["position"].as_u64().context("position")?,
        command_id: events[0]["metadata"]["command_id"]
            .as_str()
            .context("command id")?
            .to_string(),
        replayed: reply.header("idempotent-replayed") == Some("true"),
    })
}

/// One client: deposits into random accounts, one command at a time, each with a key
/// of its own, until `stop`; the command in flight when `stop` is raised is still
/// seen through to its acknowledgement.
async fn run_client(
    id: usize,
    target: Target,
    stop: Arc<AtomicBool>,
    mut rng: Prng,
) -> Result<ClientReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut report = ClientReport::default();
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("client-{id}-{sequence}");
        let account = format!("acct-{}", rng.below(ACCOUNTS as u64));
        let amount = rng.between(1, 9);
        let body = json!({ "aggregate_id": account, "payload": { "amount": amount } });
        let reply =
            send_until_acknowledged(&client, &target, "deposit", &body, &key, &mut report).await?;
        report.acks.push(ack(&key, &account, amount, &reply)?);
        sequence += 1;
    }
    Ok(report)
}

/// How many times the log says a run found an unclean stop.
fn unclean_starts(binary: &Binary) -> usize {
    binary.log_text().matches(UNCLEAN).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_duplicates_nothing() -> Result<()> {
    let folders = folders()?;
    let (data, plugins_dir, log) = (&folders.data, &folders.plugins, &folders.log);
    let mut rng = Prng::new(SEED);
    let kills = match std::env::var("TESSERA_CRASH_KILLS") {
        Ok(text) => text
            .parse()
            .context("TESSERA_CRASH_KILLS must be a whole number")?,
        Err(_) => KILLS,
    };

    let mut host = Binary::start(data, plugins_dir, log, &[]).await?;
    ensure!(unclean_starts(&host) == 0, "a first run is clean");
    let target = Target(Arc::new(RwLock::new(host.url.clone())));

    // The accounts, opened once, with keys as well.
    let mut opening = ClientReport::default();
    for n in 0..ACCOUNTS {
        let body = json!({ "aggregate_id": format!("acct-{n}"), "payload": { "owner": format!("owner-{n}") } });
        send_until_acknowledged(
            &host.client,
            &target,
            "open-account",
            &body,
            &format!("open-{n}"),
            &mut opening,
        )
        .await?;
    }

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        let client_rng = Prng::new(SEED ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9));
        clients.spawn(run_client(id, target.clone(), stop.clone(), client_rng));
    }

    // The kills, each after a random stretch of load, each followed by a restart.
    for kill in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.between(100, 800))).await;
        host.sigkill();
        ensure!(
            data.join("RUNNING").exists(),
            "kill {kill}: a SIGKILLed run leaves its RUNNING marker"
        );
        host = Binary::start(data, plugins_dir, log, &[]).await?;
        target.set(&host.url);
        ensure!(
            unclean_starts(&host) == kill,
            "kill {kill}: the restarted host did not report the unclean stop:\n{}",
            host.log_tail()
        );
    }
    // Some load on the last run too, then the clients finish what they have in flight.
    tokio::time::sleep(Duration::from_millis(rng.between(100, 800))).await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut connection_failures = 0;
    let mut unexpected = opening.unexpected;
    while let Some(report) = clients.join_next().await {
        let report = report??;
        acks.extend(report.acks);
        connection_failures += report.connection_failures;
        unexpected.extend(report.unexpected);
    }
    ensure!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    ensure!(
        acks.len() >= CLIENTS * kills,
        "too little load to mean anything: {} acknowledged commands",
        acks.len()
    );

    // A graceful stop with requests in flight.
    let (term_acks, host) =
        sigterm_with_requests_in_flight(host, &target, data, plugins_dir, log).await?;
    acks.extend(term_acks);

    // The kills hit the load: clients lost connections and sent again.
    ensure!(
        connection_failures > 0,
        "no request ever failed: did the kills happen?"
    );

    // The log: every acknowledged command exactly once, nothing else.
    let events = read_log(&host.client, &host.url).await?;
    check_log(&events, &acks)?;

    // The read models after the crashes equal a rebuild from the log alone.
    compare_with_rebuild(host, &folders, &events).await?;
    Ok(())
}

/// Sends a burst of deposits and a query that waits on the host, SIGTERMs the process
/// while they are in flight, and checks the stop: the waiting query gets its whole
/// answer, the exit status is success, the marker is removed, and the next run
/// starts clean. Deposits refused by the stopping host are sent again to the next
/// run. Returns the deposits' acknowledgements and the next run.
async fn sigterm_with_requests_in_flight(
    mut host: Binary,
    target: &Target,
    data: &Path,
    plugins_dir: &Path,
    log: &Path,
) -> Result<(Vec<Ack>, Binary)> {
    let unclean_before = unclean_starts(&host);
    let at = head(&host.client, &host.url).await?;
    // The query waits (in the host) for a position the log will not reach: it is
    // surely in flight when the signal arrives, and answers `stale` after its wait.
    let waiting = {
        let (client, url) = (host.client.clone(), host.url.clone());
        tokio::spawn(async move {
            let response = client
                .get(format!("{url}/queries/totals"))
                .header("tessera-min-position", (at + 1_000_000).to_string())
                .header("tessera-max-wait", "3000")
                .send()
                .await?;
            Reply::read(response).await
        })
    };
    // Well past the time a request takes to reach a host on loopback.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Deposits racing the signal: each is answered, refused or never connected.
    let mut burst = JoinSet::new();
    for n in 0..16 {
        let (client, url) = (host.client.clone(), host.url.clone());
        let key = format!("term-{n}");
        let account = format!("acct-{}", n % ACCOUNTS);
        burst.spawn(async move {
            let body = json!({ "aggregate_id": account, "payload": { "amount": 1 } });
            let sent = client
                .post(format!("{url}/commands/deposit"))
                .header("idempotency-key", &key)
                .json(&body)
                .send()
                .await;
            let reply = match sent {
                Ok(response) => Reply::read(response).await.ok(),
                Err(_) => None,
            };
            (key, account, reply)
        });
    }
    host.sigterm()?;
    let status = host.wait_exit(Duration::from_secs(60)).await?;
    ensure!(
        status.success(),
        "SIGTERM: exit status {status}; log:\n{}",
        host.log_tail()
    );
    ensure!(
        !data.join("RUNNING").exists(),
        "a graceful stop removes the RUNNING marker"
    );
    ensure!(
        host.log_text().contains("shutdown requested"),
        "{}",
        host.log_tail()
    );

    let waited = waiting.await??;
    ensure!(
        waited.status == 503 && waited.body["error"]["code"] == "stale",
        "the query in flight did not get its whole answer: {} {}",
        waited.status,
        waited.body
    );

    let next = Binary::start(data, plugins_dir, log, &[]).await?;
    target.set(&next.url);
    ensure!(
        unclean_starts(&next) == unclean_before,
        "a run after a graceful stop is clean:\n{}",
        next.log_tail()
    );

    // Deposits the stopping host answered are acknowledged; the others were refused or
    // never connected, and are sent again with their key.
    let mut acks = Vec::new();
    let mut report = ClientReport::default();
    while let Some(outcome) = burst.join_next().await {
        let (key, account, reply) = outcome?;
        let reply = match reply {
            Some(reply) if reply.status == 200 => reply,
            Some(reply) if reply.status != 503 => {
                bail!("{key} during the stop: {} {}", reply.status, reply.body)
            }
            _ => {
                let body = json!({ "aggregate_id": account, "payload": { "amount": 1 } });
                send_until_acknowledged(&next.client, target, "deposit", &body, &key, &mut report)
                    .await?
            }
        };
        acks.push(ack(&key, &account, 1, &reply)?);
    }
    ensure!(report.unexpected.is_empty(), "{:#?}", report.unexpected);
    Ok((acks, next))
}

/// Checks the log against the acknowledgements: one `Deposited` event per key that
/// was acknowledged at least once, at the acknowledged position, with the
/// acknowledged command id, account and amount; the opens; nothing else.
fn check_log(events: &[Value], acks: &[Ack]) -> Result<()> {
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().context("position"))
        .collect::<Result<_>>()?;
    ensure!(
        positions == (1..=events.len() as u64).collect::<Vec<_>>(),
        "the log's positions are not 1..={}",
        events.len()
    );
    let command_ids: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["metadata"]["command_id"].as_str())
        .collect();
    ensure!(
        command_ids.len() == events.len(),
        "some command produced two events: {} command ids for {} events",
        command_ids.len(),
        events.len()
    );

    // Every acknowledgement of a key (the first, and replays after retries) names the
    // same commit.
    let mut by_key: BTreeMap<&str, &Ack> = BTreeMap::new();
    for ack in acks {
        if let Some(first) = by_key.get(ack.key.as_str()) {
            ensure!(
                first.position == ack.position && first.command_id == ack.command_id,
                "{} was acknowledged twice with different commits: {first:?} and {ack:?}",
                ack.key
            );
        } else {
            by_key.insert(&ack.key, ack);
        }
    }
    let opens = events
        .iter()
        .filter(|e| e["type"] == "AccountOpened")
        .count();
    ensure!(opens == ACCOUNTS, "{opens} accounts opened, not {ACCOUNTS}");
    ensure!(
        events.len() == by_key.len() + ACCOUNTS,
        "the log holds {} events for {} acknowledged commands and {ACCOUNTS} opens: retries duplicated or lost something",
        events.len(),
        by_key.len()
    );
    for (key, ack) in &by_key {
        let event = events
            .get((ack.position - 1) as usize)
            .with_context(|| format!("{key}: no event at {}", ack.position))?;
        ensure!(
            event["type"] == "Deposited"
                && event["stream"] == format!("account-{}", ack.account)
                && event["data"]["amount"] == ack.amount
                && event["metadata"]["command_id"] == ack.command_id.as_str(),
            "{key} acknowledged as {ack:?}, but the log holds {event}"
        );
    }
    let replays = acks.iter().filter(|a| a.replayed).count();
    eprintln!(
        "{} acknowledged commands ({replays} acknowledgements were replays), {} events",
        by_key.len(),
        events.len()
    );
    Ok(())
}

/// Stops `host` gracefully, copies only its write store (`events.db*`) into a fresh
/// data folder, starts it again beside a host on the copy, and compares their read
/// models (and both with the log) once both are live at the head.
async fn compare_with_rebuild(mut host: Binary, folders: &Folders, log: &[Value]) -> Result<()> {
    host.sigterm()?;
    let status = host.wait_exit(Duration::from_secs(60)).await?;
    ensure!(status.success(), "exit status {status}");
    let rebuild_dir = TempDir::new()?;
    let rebuild_data = rebuild_dir.path().join("data");
    std::fs::create_dir_all(&rebuild_data)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(&folders.data)? {
        let path = entry?.path();
        let name = path.file_name().context("file name")?.to_string_lossy();
        if name.starts_with("events.db") {
            std::fs::copy(&path, rebuild_data.join(&*name))?;
            copied += 1;
        }
    }
    ensure!(copied >= 1, "no events.db in {}", folders.data.display());

    let host = Binary::start(&folders.data, &folders.plugins, &folders.log, &[]).await?;
    let rebuilt = Binary::start(
        &rebuild_data,
        &folders.plugins,
        &rebuild_dir.path().join("tessera.log"),
        &[],
    )
    .await?;
    let at = head(&host.client, &host.url).await?;
    ensure!(at == log.len() as u64, "head {at} for {} events", log.len());
    ensure!(
        head(&rebuilt.client, &rebuilt.url).await? == at,
        "the copy has another head"
    );
    wait_live(&host.client, &host.url, &PROJECTIONS).await?;
    wait_live(&rebuilt.client, &rebuilt.url, &PROJECTIONS).await?;

    let accounts = all_accounts(&host.client, &host.url, 3, at).await?;
    let rebuilt_accounts = all_accounts(&rebuilt.client, &rebuilt.url, 3, at).await?;
    ensure!(
        accounts == rebuilt_accounts,
        "accounts differ from a rebuild:\n{accounts:#?}\n{rebuilt_accounts:#?}"
    );
    let totals = query_at(&host.client, &host.url, "totals", "", at).await?;
    let rebuilt_totals = query_at(&rebuilt.client, &rebuilt.url, "totals", "", at).await?;
    ensure!(totals.status == 200, "{}", totals.body);
    ensure!(
        totals.body == rebuilt_totals.body,
        "totals differ from a rebuild:\n{}\n{}",
        totals.body,
        rebuilt_totals.body
    );

    // And both agree with the log itself.
    let ledger = Ledger::from_log(log, at)?;
    let balances: BTreeMap<String, i64> = accounts
        .iter()
        .map(|a| {
            Ok((
                a["id"].as_str().context("id")?.to_string(),
                a["balance"].as_i64().context("balance")?,
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(
        balances == ledger.balances(),
        "{balances:?} vs {:?}",
        ledger.balances()
    );
    ensure!(
        totals.body["total_balance"] == ledger.total_balance()
            && totals.body["open_accounts"] == ACCOUNTS,
        "totals {} vs the log's {}",
        totals.body,
        ledger.total_balance()
    );
    Ok(())
}

/// A start that fails (here: the plugins folder is a file) is not a crash: it leaves
/// no `RUNNING` marker behind, so the next start does not report an unclean stop; and
/// one that fails after a crash keeps the crash's marker, so the check still happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_neither_fakes_nor_hides_an_unclean_stop() -> Result<()> {
    let dir = TempDir::new()?;
    let data = dir.path().join("data");
    let not_a_folder = dir.path().join("plugins-file");
    std::fs::write(&not_a_folder, "not a folder")?;
    let fail_to_start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--plugins")
            .arg(&not_a_folder)
            .args(["--listen", "127.0.0.1:0"])
            .output()
    };
    let output = fail_to_start()?;
    ensure!(!output.status.success(), "the start should fail");
    ensure!(
        !data.join("RUNNING").exists(),
        "a failed start left a RUNNING marker"
    );

    // After a crash (a marker left behind), a failed start keeps it.
    std::fs::write(data.join("RUNNING"), "12345")?;
    let output = fail_to_start()?;
    ensure!(!output.status.success(), "the start should fail");
    ensure!(
        data.join("RUNNING").exists(),
        "a failed start removed the marker of an earlier crash"
    );
    Ok(())
}
