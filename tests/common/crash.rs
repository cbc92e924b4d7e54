//! Helpers for the tests that SIGKILL the real binary under load and then check what
//! survived (`tests/crash_kill.rs`, and `tests/soak.rs` behind `make soak`): the
//! host's URL across restarts, a folder serving the four example bank plugins, a
//! command sent with its idempotency key until a host decides it, what an
//! acknowledgement promised, the log checked against every acknowledgement, and the
//! read models compared with a rebuild from a copy of the log alone.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tempfile::TempDir;

use super::binary::Binary;
use super::lifecycle::copy_log;
use super::read_side::Ledger;
use super::{Reply, plugins};

/// What the log says when a run finds the `RUNNING` marker of a run that did not stop.
pub const UNCLEAN: &str = "the last run did not stop cleanly";
/// The four example bank plugins, as built for this test run.
pub const BANK_PLUGINS: [&str; 4] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
];
/// Their names, as their `describe` says, in the same order.
pub const BANK_PLUGIN_NAMES: [&str; 4] = [
    "bank-account",
    "account-balance",
    "bank-totals",
    "bank-queries",
];
/// The bank's read models.
pub const BANK_PROJECTIONS: [&str; 2] = ["account-balance", "bank-totals"];
/// The longest one command may take to be decided, retries and restarts included.
pub const DECIDE_BOUND: Duration = Duration::from_secs(120);
/// How many 50 ms looks the comparison with a rebuild gives the projections to catch
/// up: ten minutes, for a rebuild of a long soak's log on a busy machine.
const LIVE_POLLS: usize = 12_000;

/// The host's current URL: it changes with every restart.
#[derive(Debug, Clone)]
pub struct Target(Arc<RwLock<String>>);

impl Target {
    pub fn new(url: &str) -> Self {
        Target(Arc::new(RwLock::new(url.to_string())))
    }

    pub fn get(&self) -> String {
        self.0.read().expect("url lock").clone()
    }

    pub fn set(&self, url: &str) {
        *self.0.write().expect("url lock") = url.to_string();
    }
}

/// The folders of one crash test: the plugins, the data, the process's log.
#[derive(Debug)]
pub struct Folders {
    _dir: TempDir,
    /// The folder that holds the others.
    pub root: PathBuf,
    pub data: PathBuf,
    pub plugins: PathBuf,
    pub log: PathBuf,
}

/// A fresh folder whose `plugins/` holds the four example bank plugins, each as
/// `<plugin name>.wasm` (`bank-account.wasm`), the file `PUT /plugins/{name}` writes,
/// so that a deploy over HTTP and a file swapped into the folder replace one file.
pub fn bank_folders() -> Result<Folders> {
    let dir = TempDir::new()?;
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    for (plugin, name) in BANK_PLUGINS.iter().zip(BANK_PLUGIN_NAMES) {
        std::fs::copy(plugin, plugins_dir.join(format!("{name}.wasm")))?;
    }
    Ok(Folders {
        data: dir.path().join("data"),
        log: dir.path().join("tessera.log"),
        plugins: plugins_dir,
        root: dir.path().to_path_buf(),
        _dir: dir,
    })
}

/// How many times the process's log says a run found an unclean stop.
pub fn unclean_starts(binary: &Binary) -> usize {
    binary.log_text().matches(UNCLEAN).count()
}

/// What a host finally said to a command.
#[derive(Debug)]
pub enum Decision {
    /// `2xx`: appended now, or the replay of an earlier append (`Idempotent-Replayed`).
    Acknowledged(Reply),
    /// `4xx`: refused; nothing was appended and the key was not stored.
    Refused(Reply),
}

/// The answers on the way to a decision that were not one; each was followed by the
/// same request, with the same key.
#[derive(Debug, Default, Clone)]
pub struct Attempts {
    /// No whole answer: the connection was refused or reset, or the body was cut off
    /// (the process died while answering).
    pub connection_failures: usize,
    /// `5xx` answers, by `"<status> <error code>"` (`"503 shutting_down"`). The caller
    /// decides which of them are documented.
    pub server_errors: BTreeMap<String, usize>,
}

impl Attempts {
    pub fn add(&mut self, other: &Attempts) {
        self.connection_failures += other.connection_failures;
        for (kind, count) in &other.server_errors {
            *self.server_errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// The `5xx` answers whose kind is not among `documented`.
    pub fn undocumented(&self, documented: &[&str]) -> BTreeMap<String, usize> {
        self.server_errors
            .iter()
            .filter(|(kind, _)| !documented.contains(&kind.as_str()))
            .map(|(kind, count)| (kind.clone(), *count))
            .collect()
    }
}

/// The kind of a `5xx` answer: its status and error code.
pub fn server_error_kind(reply: &Reply) -> String {
    let code = reply.body["error"]["code"]
        .as_str()
        .unwrap_or("no_error_body");
    format!("{} {code}", reply.status)
}

/// Sends command `name` with `body` and Idempotency-Key `key` to whichever host
/// `target` names, until a host decides it: across refused connections, answers cut
/// off by a kill, restarts and `5xx` answers (each sent again with the same key, as
/// the command model tells clients to). Gives up after [`DECIDE_BOUND`].
pub async fn send_until_decided(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    body: &Value,
    key: &str,
    attempts: &mut Attempts,
) -> Result<Decision> {
    let start = Instant::now();
    loop {
        ensure!(
            start.elapsed() < DECIDE_BOUND,
            "{key} was never decided within {DECIDE_BOUND:?}: {attempts:?}"
        );
        let request = client
            .post(format!("{}/commands/{name}", target.get()))
            .header("idempotency-key", key)
            .json(body);
        match request.send().await {
            Ok(response) => match Reply::read(response).await {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    return Ok(Decision::Acknowledged(reply));
                }
                Ok(reply) if (400..500).contains(&reply.status) => {
                    return Ok(Decision::Refused(reply));
                }
                Ok(reply) => {
                    *attempts
                        .server_errors
                        .entry(server_error_kind(&reply))
                        .or_default() += 1;
                }
                Err(_) => attempts.connection_failures += 1,
            },
            Err(_) => attempts.connection_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An acknowledged bank command (one event per command), and what its
/// acknowledgement promised.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub command: String,
    pub aggregate_id: String,
    pub payload: Value,
    /// The log position the acknowledgement named.
    pub position: u64,
    /// The stream's version after the command.
    pub version: u64,
    /// The event, as the acknowledgement showed it (command id and all).
    pub event: Value,
    /// Acknowledged as a replay of an earlier attempt (`Idempotent-Replayed`).
    pub replayed: bool,
}

impl Ack {
    /// Reads the acknowledgement of a bank command sent with `key`.
    pub fn new(
        key: &str,
        command: &str,
        aggregate_id: &str,
        payload: &Value,
        reply: &Reply,
    ) -> Result<Ack> {
        let body = &reply.body;
        let events = body["events"].as_array().context("events")?;
        ensure!(
            events.len() == 1,
            "{key}: one event per bank command: {body}"
        );
        let position = body["position"].as_u64().context("position")?;
        ensure!(
            events[0]["position"] == position,
            "{key}: the event is not at the position acknowledged: {body}"
        );
        Ok(Ack {
            key: key.to_string(),
            command: command.to_string(),
            aggregate_id: aggregate_id.to_string(),
            payload: payload.clone(),
            position,
            version: body["version"].as_u64().context("version")?,
            event: events[0].clone(),
            replayed: reply.header("idempotent-replayed") == Some("true"),
        })
    }
}

/// What [`check_log`] found.
#[derive(Debug, Clone, Copy)]
pub struct LogFigures {
    pub events: usize,
    /// Distinct keys acknowledged.
    pub acknowledged: usize,
    /// Acknowledgements that were replays of an earlier attempt.
    pub replays: usize,
}

/// Checks the log (every event, in order) against every acknowledgement: positions are
/// `1..=n`; all acknowledgements of a key name the same event; each acknowledged key's
/// event is in the log exactly once, at its acknowledged position, as the
/// acknowledgement showed it, on the command's stream with the command's payload as
/// its data; and the log holds nothing else (one event per acknowledged key).
pub fn check_log(events: &[Value], acks: &[Ack]) -> Result<LogFigures> {
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

    let mut by_key: BTreeMap<&str, &Ack> = BTreeMap::new();
    for ack in acks {
        if let Some(first) = by_key.get(ack.key.as_str()) {
            ensure!(
                first.event == ack.event && first.payload == ack.payload,
                "{} was acknowledged twice with different commits: {first:?} and {ack:?}",
                ack.key
            );
        } else {
            by_key.insert(&ack.key, ack);
        }
    }
    let mut claimed = HashSet::new();
    for (key, ack) in &by_key {
        ensure!(
            claimed.insert(ack.position),
            "two keys were acknowledged at position {}",
            ack.position
        );
        let event = events
            .get((ack.position - 1) as usize)
            .with_context(|| format!("{key}: no event at {}", ack.position))?;
        ensure!(
            *event == ack.event
                && event["stream"] == format!("account-{}", ack.aggregate_id)
                && event["data"] == ack.payload,
            "{key} was acknowledged as {ack:?}, but the log holds {event}"
        );
    }
    ensure!(
        events.len() == by_key.len(),
        "the log holds {} events for {} acknowledged commands: a retry duplicated something, \
         or an event is there that no acknowledgement named",
        events.len(),
        by_key.len()
    );
    Ok(LogFigures {
        events: events.len(),
        acknowledged: by_key.len(),
        replays: acks.iter().filter(|a| a.replayed).count(),
    })
}

/// What [`compare_with_rebuild`] compared.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    /// The log's head on both hosts.
    pub head: u64,
    pub accounts: usize,
    /// Query answers compared between the two hosts.
    pub answers: usize,
}

/// Stops `host` gracefully (its exit status must be success), copies only its write
/// store (`events.db*`) into a fresh data folder, starts it again beside a host on the
/// copy (both with `extra` arguments), and once both are live at the head compares
/// their read models through every query: the `accounts` walk, `totals`, and
/// `account` for every account; then both with the log itself (balances, versions,
/// totals). `log` is the whole log as read before the stop.
pub async fn compare_with_rebuild(
    mut host: Binary,
    folders: &Folders,
    log: &[Value],
    extra: &[&str],
) -> Result<Comparison> {
    host.sigterm()?;
    let status = host.wait_exit(Duration::from_secs(60)).await?;
    ensure!(
        status.success(),
        "exit status {status}; log:\n{}",
        host.log_tail()
    );
    let rebuild_dir = TempDir::new()?;
    let rebuild_data = rebuild_dir.path().join("data");
    std::fs::create_dir_all(&rebuild_data)?;
    copy_log(&folders.data, &rebuild_data)?;

    let host = Binary::start(&folders.data, &folders.plugins, &folders.log, extra).await?;
    let rebuilt = Binary::start(
        &rebuild_data,
        &folders.plugins,
        &rebuild_dir.path().join("tessera.log"),
        extra,
    )
    .await?;
    let at = host.head().await?;
    ensure!(at == log.len() as u64, "head {at} for {} events", log.len());
    ensure!(rebuilt.head().await? == at, "the copy has another head");
    host.wait_live_for(&BANK_PROJECTIONS, LIVE_POLLS).await?;
    rebuilt.wait_live_for(&BANK_PROJECTIONS, LIVE_POLLS).await?;

    let accounts = host.all_accounts(5, at).await?;
    let rebuilt_accounts = rebuilt.all_accounts(5, at).await?;
    ensure!(
        accounts == rebuilt_accounts,
        "accounts differ from a rebuild:\n{accounts:#?}\n{rebuilt_accounts:#?}"
    );
    let totals = host.query_at("totals", "", at).await?;
    let rebuilt_totals = rebuilt.query_at("totals", "", at).await?;
    ensure!(totals.status == 200, "{}", totals.body);
    ensure!(
        totals.body == rebuilt_totals.body,
        "totals differ from a rebuild:\n{}\n{}",
        totals.body,
        rebuilt_totals.body
    );
    let ledger = Ledger::from_log(log, at)?;
    let mut answers = accounts.len().div_ceil(5) + 1;
    for (id, (owner, balance, version)) in &ledger.accounts {
        let params = format!("id={id}");
        let answer = host.query("account", &params, &[]).await?;
        let rebuilt_answer = rebuilt.query("account", &params, &[]).await?;
        ensure!(
            answer.status == 200 && answer.body == rebuilt_answer.body,
            "account {id} differs from a rebuild:\n{} {}\n{} {}",
            answer.status,
            answer.body,
            rebuilt_answer.status,
            rebuilt_answer.body
        );
        ensure!(
            answer.body["owner"] == owner.as_str()
                && answer.body["balance"] == *balance
                && answer.body["version"] == *version,
            "account {id} is {} but the log says owner {owner}, balance {balance}, version {version}",
            answer.body
        );
        answers += 1;
    }

    // And both agree with the log itself.
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
            && totals.body["open_accounts"] == ledger.accounts.len(),
        "totals {} vs the log's {} in {} accounts",
        totals.body,
        ledger.total_balance(),
        ledger.accounts.len()
    );
    Ok(Comparison {
        head: at,
        accounts: accounts.len(),
        answers,
    })
}
