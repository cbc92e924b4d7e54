//! Crashes of the real binary under load. Clients deposit concurrently, each command
//! with its own Idempotency-Key; the process is SIGKILLed at seeded random moments and
//! restarted on the same data folder; a client whose request failed for want of a
//! connection sends it again, with the same key, to the restarted host. Then:
//! - every acknowledged command is in the log exactly once, at the position its
//!   acknowledgement named, with the command id it named; retries appended nothing
//!   (the log holds one event per acknowledged key, the opens included);
//! - a SIGKILLed run is seen as unclean by the next (the `RUNNING` marker is left
//!   behind, and the next run checks its stores), a SIGTERMed run as clean: requests
//!   in flight complete, the exit status is success, the marker is removed;
//! - every read model equals a fresh rebuild from a copy of the log alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::Reply;
use crate::common::binary::Binary;
use crate::common::crash::{
    Ack, Attempts, Decision, Target, bank_folders, check_log, compare_with_rebuild,
    send_until_decided, unclean_starts,
};
use anyhow::{Context, Result, bail, ensure};
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

/// What one client saw.
#[derive(Debug, Default)]
struct ClientReport {
    acks: Vec<Ack>,
    /// Attempts that got no decision (and were sent again).
    attempts: Attempts,
    /// Answers no client should ever get.
    unexpected: Vec<String>,
}

impl ClientReport {
    /// Sends a command until it is acknowledged; anything else a host decides, and
    /// any `5xx` but `shutting_down` on the way, is unexpected.
    async fn send(
        &mut self,
        client: &reqwest::Client,
        target: &Target,
        name: &str,
        body: &Value,
        key: &str,
    ) -> Result<Option<Reply>> {
        let mut attempts = Attempts::default();
        let decision = send_until_decided(client, target, name, body, key, &mut attempts).await?;
        for (kind, count) in attempts.undocumented(&["503 shutting_down"]) {
            self.unexpected.push(format!("{key}: {count} x {kind}"));
        }
        self.attempts.add(&attempts);
        match decision {
            Decision::Acknowledged(reply) => Ok(Some(reply)),
            Decision::Refused(reply) => {
                self.unexpected
                    .push(format!("{key}: {} {}", reply.status, reply.body));
                Ok(None)
            }
        }
    }

    /// Sends a bank command until it is acknowledged and keeps the acknowledgement.
    async fn command(
        &mut self,
        client: &reqwest::Client,
        target: &Target,
        name: &str,
        account: &str,
        payload: Value,
        key: &str,
    ) -> Result<()> {
        let body = json!({ "aggregate_id": account, "payload": payload });
        if let Some(reply) = self.send(client, target, name, &body, key).await? {
            self.acks
                .push(Ack::new(key, name, account, &payload, &reply)?);
        }
        Ok(())
    }
}

/// One client: deposits into random accounts, one command at a time, each with a key
/// of its own, until `stop`; the command in flight when `stop` is raised is still
/// seen through to its acknowledgement.
async fn run_client(
    id: usize,
    target: Target,
    stop: Arc<AtomicBool>,
    mut rng: fastrand::Rng,
) -> Result<ClientReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut report = ClientReport::default();
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("client-{id}-{sequence}");
        let account = format!("acct-{}", rng.u64(..ACCOUNTS as u64));
        let amount = rng.u64(1..=9);
        report
            .command(
                &client,
                &target,
                "deposit",
                &account,
                json!({ "amount": amount }),
                &key,
            )
            .await?;
        sequence += 1;
    }
    Ok(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_duplicates_nothing() -> Result<()> {
    let folders = bank_folders()?;
    let (data, plugins_dir, log) = (&folders.data, &folders.plugins, &folders.log);
    let mut rng = fastrand::Rng::with_seed(SEED);
    let kills = match std::env::var("TESSERA_CRASH_KILLS") {
        Ok(text) => text
            .parse()
            .context("TESSERA_CRASH_KILLS must be a whole number")?,
        Err(_) => KILLS,
    };

    let mut host = Binary::start(data, plugins_dir, log, &[]).await?;
    ensure!(unclean_starts(&host) == 0, "a first run is clean");
    let target = Target::new(&host.url);

    // The accounts, opened once, with keys as well.
    let mut opening = ClientReport::default();
    for n in 0..ACCOUNTS {
        opening
            .command(
                &host.client,
                &target,
                "open-account",
                &format!("acct-{n}"),
                json!({ "owner": format!("owner-{n}") }),
                &format!("open-{n}"),
            )
            .await?;
    }

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        let client_rng = fastrand::Rng::with_seed(SEED ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9));
        clients.spawn(run_client(id, target.clone(), stop.clone(), client_rng));
    }

    // The kills, each after a random stretch of load, each followed by a restart.
    for kill in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(100..=800))).await;
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
    tokio::time::sleep(Duration::from_millis(rng.u64(100..=800))).await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = opening.acks;
    let mut connection_failures = opening.attempts.connection_failures;
    let mut unexpected = opening.unexpected;
    while let Some(report) = clients.join_next().await {
        let report = report??;
        acks.extend(report.acks);
        connection_failures += report.attempts.connection_failures;
        unexpected.extend(report.unexpected);
    }
    ensure!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    ensure!(
        acks.len() >= ACCOUNTS + CLIENTS * kills,
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
    let events = host.read_log().await?;
    let figures = check_log(&events, &acks)?;
    let opens = events
        .iter()
        .filter(|e| e["type"] == "AccountOpened")
        .count();
    ensure!(opens == ACCOUNTS, "{opens} accounts opened, not {ACCOUNTS}");
    eprintln!(
        "{} acknowledged commands ({} acknowledgements were replays), {} events",
        figures.acknowledged, figures.replays, figures.events
    );

    // The read models after the crashes equal a rebuild from the log alone.
    compare_with_rebuild(host, &folders, &events, &[]).await?;
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
    let at = host.head().await?;
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
    let mut report = ClientReport::default();
    while let Some(outcome) = burst.join_next().await {
        let (key, account, reply) = outcome?;
        let payload = json!({ "amount": 1 });
        match reply {
            Some(reply) if reply.status == 200 => {
                report
                    .acks
                    .push(Ack::new(&key, "deposit", &account, &payload, &reply)?);
            }
            Some(reply) if reply.status != 503 => {
                bail!("{key} during the stop: {} {}", reply.status, reply.body)
            }
            _ => {
                report
                    .command(&next.client, target, "deposit", &account, payload, &key)
                    .await?;
            }
        }
    }
    ensure!(report.unexpected.is_empty(), "{:#?}", report.unexpected);
    Ok((report.acks, next))
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
