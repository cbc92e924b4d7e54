//! The soak (`make soak`; ignored by `make test`): the real binary serving the four
//! example bank plugins on a real data folder, for a stated time, under a mixed load
//! from concurrent clients, SIGKILLed at seeded random moments and restarted each time
//! on the same folder. The load: commands (`open-account`, `deposit`, `withdraw` on a
//! set of accounts, each with its own Idempotency-Key, sent again with the same key
//! after a kill, and now and then replayed on purpose), queries (`account`,
//! `accounts`, `totals`; asked twice in a row so the cache answers, and with
//! `Tessera-Min-Position`), deploys (`PUT /plugins/{name}` with the admin token, and
//! files swapped into the plugins folder, among variants of each plugin that differ
//! only in a custom section, so each is new code) and projection rebuilds
//! (`POST /projections/{name}/rebuild`).
//!
//! At the end it checks every invariant and says PASS or FAIL for each:
//! - every acknowledged command is in the log exactly once, at its position, as its
//!   acknowledgement showed it, and the log holds nothing else: each event's
//!   `metadata.correlation_id` is the key of a command a client sent and saw
//!   acknowledged (a refused command is not there);
//! - reads never went back: an answer with `Tessera-Min-Position` reported at least
//!   that position, and saw every account opened at or before it, and a client's
//!   account read at its own command's position showed that command;
//! - the read models equal a rebuild from a copy of the log alone (every query's
//!   answer, compared between the host and a fresh host on the copy), and the log's
//!   own fold;
//! - every `5xx` was a documented one ([`DOCUMENTED_5XX`]; a refused connection while
//!   the host is down is not a `5xx`);
//! - after the last deploy every plugin file is served, without error;
//! - the host's resident memory stayed under a bound and did not trend upwards from
//!   run to run (each run is a new process, so no run can hide another's growth).
//!
//! Settings (environment): `TESSERA_SOAK_SECONDS` (default 600), `TESSERA_SOAK_KILLS`
//! (at least this many kills, spread at random over the duration; default 100),
//! `TESSERA_SOAK_SEED` (decimal or `0x` hex; default from the clock, printed),
//! `TESSERA_SOAK_RSS_MIB` (the bound on any sample; default 512). The summary is
//! printed and written to `target/soak/summary.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Api;
use crate::common::Reply;
use crate::common::binary::{Binary, pin_binary, rss_kib};
use crate::common::crash::{
    Ack, Attempts, BANK_PLUGIN_NAMES, BANK_PLUGINS, BANK_PROJECTIONS, Decision, Folders, Target,
    bank_folders, check_log, compare_with_rebuild, send_until_decided, server_error_kind,
    unclean_starts,
};
use crate::common::deploy::{install, with_custom_section};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

const DEFAULT_SECONDS: u64 = 600;
const DEFAULT_KILLS: usize = 100;
const DEFAULT_RSS_MIB: u64 = 512;
/// Clients sending commands, each one at a time.
const COMMAND_CLIENTS: usize = 4;
/// Clients asking queries, each one at a time.
const QUERY_CLIENTS: usize = 2;
/// The accounts the commands go to (`acct-0`...).
const ACCOUNTS: u64 = 24;
/// Variants of each plugin the deploys move between: the plugin as built, and copies
/// with a custom section of their own (the same code under another digest).
const VARIANTS: usize = 3;
const ADMIN_TOKEN: &str = "soak-admin-token";
/// How often the host's resident memory is sampled.
const RSS_EVERY: Duration = Duration::from_millis(250);
/// The `5xx` answers that are documented as passing conditions of this soak's load:
/// the host stopping (`503 shutting_down`, at the final graceful stop), a read model
/// behind the position asked for after `Tessera-Max-Wait` (`503 stale`: an async
/// projection catching up after a restart), a plugin call past its deadline on a
/// loaded machine (`504 deadline_exceeded`). A refused connection while the host is
/// down is not a `5xx`, and is counted apart. Documented but not expected here, so
/// failures: `503 projection_unavailable` (every projection is always deployed, and a
/// query waits for one being set up or replaced) and `503 contended` (one host, so no
/// other writer). Anything else (`500 plugin_failed`, `store_failed`,
/// `deploy_failed`...) is a failure of the host.
const DOCUMENTED_5XX: [&str; 3] = ["503 shutting_down", "503 stale", "504 deadline_exceeded"];
/// The business rules a bank command may be refused by.
const REFUSALS: [&str; 3] = [
    "account_not_open",
    "account_already_open",
    "insufficient_funds",
];

/// The soak's settings.
#[derive(Debug, Clone, Copy)]
struct Settings {
    duration: Duration,
    kills: usize,
    seed: u64,
    rss_bound_kib: u64,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(text) => parse_number(&text).with_context(|| format!("{name}={text:?}")),
                Err(_) => Ok(default),
            }
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        Ok(Settings {
            duration: Duration::from_secs(number("TESSERA_SOAK_SECONDS", DEFAULT_SECONDS)?),
            kills: number("TESSERA_SOAK_KILLS", DEFAULT_KILLS as u64)? as usize,
            seed: number("TESSERA_SOAK_SEED", clock)?,
            rss_bound_kib: number("TESSERA_SOAK_RSS_MIB", DEFAULT_RSS_MIB)? * 1024,
        })
    }
}

fn parse_number(text: &str) -> Result<u64> {
    let text = text.trim();
    Ok(match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16)?,
        None => text.parse()?,
    })
}

/// The process serving now.
#[derive(Debug, Clone, Copy)]
struct Current {
    /// 0 for the first run, then one more per restart.
    run: usize,
    /// 0 while no process serves (between a kill and the restart).
    pid: u32,
}

/// What every task shares.
#[derive(Debug)]
struct Shared {
    seed: u64,
    target: Target,
    current: Mutex<Current>,
    stop: AtomicBool,
    /// The highest position any command was acknowledged at.
    acknowledged_head: AtomicU64,
    /// The accounts whose opening was acknowledged, with its position.
    opened: Mutex<BTreeMap<String, u64>>,
    plugins_dir: PathBuf,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// An HTTP client for one task: answers within a minute, or the attempt failed.
fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// What one command client saw.
#[derive(Debug, Default)]
struct CommandReport {
    /// Distinct commands sent (each with its own key).
    sent: usize,
    acks: Vec<Ack>,
    /// Keys a host refused, with the rule.
    refused: Vec<(String, String)>,
    /// Commands that needed more than one attempt (a kill, a `5xx`).
    retried: usize,
    /// Acknowledged commands sent again on purpose, with their key, and replayed.
    replays: usize,
    /// Reads of a client's own write at its position.
    own_reads: usize,
    /// Acknowledgements that said `Tessera-Inline: lagging`.
    lagging: usize,
    /// Plain reads (no position) right after an acknowledgement that was not lagging.
    inline_reads: usize,
    /// What those reads missed: the inline projection's promise broken.
    inline_violations: Vec<String>,
    attempts: Attempts,
    violations: Vec<String>,
}

/// One command client: opens, deposits into and withdraws from random accounts, one
/// command at a time, until the soak stops; the command in flight then is still seen
/// through to its decision.
async fn command_client(
    id: usize,
    shared: Arc<Shared>,
    mut rng: fastrand::Rng,
) -> Result<CommandReport> {
    let client = http_client()?;
    let mut report = CommandReport::default();
    let mut sequence = 0;
    while !shared.stopping() {
        if !report.acks.is_empty() && rng.u8(..100) < 5 {
            replay_one(&client, &shared, &mut rng, &mut report).await?;
            continue;
        }
        let account = format!("acct-{}", rng.u64(..ACCOUNTS));
        let (command, payload) = match rng.u64(..100) {
            0..10 => (
                "open-account",
                json!({ "owner": format!("owner-{account}") }),
            ),
            10..65 => ("deposit", json!({ "amount": rng.u64(1..=20) })),
            _ => ("withdraw", json!({ "amount": rng.u64(1..=30) })),
        };
        let key = format!("soak-{:x}-c{id}-{sequence}", shared.seed);
        sequence += 1;
        report.sent += 1;
        // The key goes into the events' metadata too, so the log says who sent what.
        let body = json!({
            "aggregate_id": account,
            "payload": payload,
            "metadata": { "correlation_id": key },
        });
        let mut attempts = Attempts::default();
        let decision =
            send_until_decided(&client, &shared.target, command, &body, &key, &mut attempts)
                .await?;
        if attempts.connection_failures > 0 || !attempts.server_errors.is_empty() {
            report.retried += 1;
        }
        report.attempts.add(&attempts);
        match decision {
            Decision::Acknowledged(reply) => {
                let ack = Ack::new(&key, command, &account, &payload, &reply)?;
                if command == "open-account" {
                    shared
                        .opened
                        .lock()
                        .expect("opened lock")
                        .insert(account.clone(), ack.position);
                }
                shared
                    .acknowledged_head
                    .fetch_max(ack.position, Ordering::Relaxed);
                let lagging = reply.header("tessera-inline") == Some("lagging");
                report.lagging += usize::from(lagging);
                if rng.u8(..100) < 20 {
                    read_own_write(&client, &shared, &ack, lagging, &mut report).await?;
                }
                report.acks.push(ack);
            }
            Decision::Refused(reply) => {
                let reason = reply.body["error"]["details"]["reason"]
                    .as_str()
                    .unwrap_or("");
                if reply.status == 422
                    && reply.body["error"]["code"] == "rejected"
                    && REFUSALS.contains(&reason)
                {
                    report.refused.push((key, reason.to_string()));
                } else {
                    report.violations.push(format!(
                        "{key} ({command} {payload}): {} {}",
                        reply.status, reply.body
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(2..=20))).await;
    }
    Ok(report)
}

/// Sends an acknowledged command again, with its key: a host must replay the same
/// commit (`Idempotent-Replayed: true`) and append nothing.
async fn replay_one(
    client: &reqwest::Client,
    shared: &Shared,
    rng: &mut fastrand::Rng,
    report: &mut CommandReport,
) -> Result<()> {
    let first = report.acks[rng.usize(..report.acks.len())].clone();
    let body = json!({
        "aggregate_id": first.aggregate_id,
        "payload": first.payload,
        "metadata": { "correlation_id": first.key },
    });
    let mut attempts = Attempts::default();
    let decision = send_until_decided(
        client,
        &shared.target,
        &first.command,
        &body,
        &first.key,
        &mut attempts,
    )
    .await?;
    report.attempts.add(&attempts);
    report.replays += 1;
    match decision {
        Decision::Acknowledged(reply) => {
            let again = Ack::new(
                &first.key,
                &first.command,
                &first.aggregate_id,
                &first.payload,
                &reply,
            )?;
            if !again.replayed {
                report.violations.push(format!(
                    "{} sent again was not answered as a replay: {}",
                    first.key, reply.body
                ));
            }
            // `check_log` holds every acknowledgement of a key to the same event.
            report.acks.push(again);
        }
        Decision::Refused(reply) => report.violations.push(format!(
            "{} sent again was refused: {} {}",
            first.key, reply.status, reply.body
        )),
    }
    Ok(())
}

/// Reads the account a command just changed, and the answer must show the command
/// (the stream's version at least the acknowledged one): first, if the
/// acknowledgement did not say `Tessera-Inline: lagging`, without a position (the
/// inline projection's promise: a `200` means every query after it sees the
/// command), then with `Tessera-Min-Position` at the command's position.
async fn read_own_write(
    client: &reqwest::Client,
    shared: &Shared,
    ack: &Ack,
    lagging: bool,
    report: &mut CommandReport,
) -> Result<()> {
    let params = format!("id={}", ack.aggregate_id);
    if !lagging {
        let reply = ask_once(
            client,
            &shared.target,
            "account",
            &params,
            &mut report.attempts,
        )
        .await?;
        report.inline_reads += 1;
        if reply.status != 200 || reply.body["version"].as_u64() < Some(ack.version) {
            report.inline_violations.push(format!(
                "{} acknowledged at position {} (version {}, not lagging), but the next \
                 account {} read answered {} at position {:?}: {}",
                ack.key,
                ack.position,
                ack.version,
                ack.aggregate_id,
                reply.status,
                reply.header("tessera-position"),
                reply.body
            ));
        }
    }
    let reply = ask_until_answered(
        client,
        &shared.target,
        "account",
        &params,
        ack.position,
        &mut report.attempts,
    )
    .await?;
    report.own_reads += 1;
    let position = reply
        .header("tessera-position")
        .and_then(|p| p.parse::<u64>().ok());
    if reply.status != 200
        || reply.body["version"].as_u64() < Some(ack.version)
        || position < Some(ack.position)
    {
        report.violations.push(format!(
            "{} acknowledged at position {} (version {}), but account {} read at that position \
             answered {} {:?} {}",
            ack.key,
            ack.position,
            ack.version,
            ack.aggregate_id,
            reply.status,
            position,
            reply.body
        ));
    }
    Ok(())
}

/// Asks `GET /queries/{name}?{params}` (no position) until a host answers at all: a
/// failed connection (a kill) is tried again, any answer is returned.
async fn ask_once(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    params: &str,
    attempts: &mut Attempts,
) -> Result<Reply> {
    let start = Instant::now();
    while start.elapsed() < crate::common::crash::DECIDE_BOUND {
        let request = client.get(format!("{}/queries/{name}?{params}", target.get()));
        match request.send().await {
            Ok(response) => match Reply::read(response).await {
                Ok(reply) => {
                    if reply.status >= 500 {
                        *attempts
                            .server_errors
                            .entry(server_error_kind(&reply))
                            .or_default() += 1;
                    }
                    return Ok(reply);
                }
                Err(_) => attempts.connection_failures += 1,
            },
            Err(_) => attempts.connection_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name}?{params} was never answered")
}

/// Asks `GET /queries/{name}?{params}` with `Tessera-Min-Position: position` until a
/// host answers with anything but a documented passing `5xx` (each counted in
/// `attempts`) or a failed connection.
async fn ask_until_answered(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    params: &str,
    position: u64,
    attempts: &mut Attempts,
) -> Result<Reply> {
    let start = Instant::now();
    while start.elapsed() < crate::common::crash::DECIDE_BOUND {
        let request = client
            .get(format!("{}/queries/{name}?{params}", target.get()))
            .header("tessera-min-position", position.to_string())
            .header("tessera-max-wait", "5000");
        match request.send().await {
            Ok(response) => match Reply::read(response).await {
                Ok(reply) if reply.status >= 500 => {
                    let kind = server_error_kind(&reply);
                    let passing = DOCUMENTED_5XX.contains(&kind.as_str());
                    *attempts.server_errors.entry(kind).or_default() += 1;
                    if !passing {
                        return Ok(reply);
                    }
                }
                Ok(reply) => return Ok(reply),
                Err(_) => attempts.connection_failures += 1,
            },
            Err(_) => attempts.connection_failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name}?{params} was never answered at position {position}")
}

/// What one query client saw.
#[derive(Debug, Default)]
struct QueryReport {
    sent: usize,
    ok: usize,
    /// `404 not_found` for an account not opened (as far as the answer's position).
    not_found: usize,
    /// Answers from the query cache (`Tessera-Cache: hit`).
    cache_hits: usize,
    /// Asked with `Tessera-Min-Position`.
    with_min_position: usize,
    /// No whole answer (the host was killed).
    interrupted: usize,
    server_errors: BTreeMap<String, usize>,
    violations: Vec<String>,
}

/// One query client: asks the bank's queries, one at a time, until the soak stops.
async fn query_client(shared: Arc<Shared>, mut rng: fastrand::Rng) -> Result<QueryReport> {
    let client = http_client()?;
    let mut report = QueryReport::default();
    while !shared.stopping() {
        let account = format!("acct-{}", rng.u64(..ACCOUNTS));
        let min_position =
            (rng.u8(..100) < 40).then(|| shared.acknowledged_head.load(Ordering::Relaxed));
        let (name, params) = match rng.u64(..100) {
            0..50 => ("account", format!("id={account}")),
            50..70 => ("accounts", format!("limit={}", rng.u64(1..=30))),
            _ => ("totals", String::new()),
        };
        let post = rng.u8(..100) < 15;
        // Twice in a row, so that the second is often answered from the cache.
        let times = if rng.u8(..100) < 50 { 2 } else { 1 };
        for _ in 0..times {
            report.sent += 1;
            report.with_min_position += usize::from(min_position.is_some());
            let url = format!("{}/queries/{name}", shared.target.get());
            let mut request = if post {
                let mut object = serde_json::Map::new();
                for pair in params.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').context("param")?;
                    let value = value
                        .parse::<u64>()
                        .map_or_else(|_| json!(value), |n| json!(n));
                    object.insert(key.to_string(), value);
                }
                client.post(url).json(&Value::Object(object))
            } else if params.is_empty() {
                client.get(url)
            } else {
                client.get(format!("{url}?{params}"))
            };
            if let Some(position) = min_position {
                request = request
                    .header("tessera-min-position", position.to_string())
                    .header("tessera-max-wait", "5000");
            }
            let reply = match request.send().await {
                Ok(response) => match Reply::read(response).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        report.interrupted += 1;
                        continue;
                    }
                },
                Err(_) => {
                    report.interrupted += 1;
                    continue;
                }
            };
            check_answer(&shared, name, &account, min_position, &reply, &mut report);
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(5..=30))).await;
    }
    Ok(report)
}

/// Files one query answer in `report`, and its violations: an answer older than the
/// position asked for, an account missing that was opened at or before it, an
/// answer no client should get.
fn check_answer(
    shared: &Shared,
    name: &str,
    account: &str,
    min_position: Option<u64>,
    reply: &Reply,
    report: &mut QueryReport,
) {
    let position = reply
        .header("tessera-position")
        .and_then(|p| p.parse::<u64>().ok());
    let opened_at = shared
        .opened
        .lock()
        .expect("opened lock")
        .get(account)
        .copied();
    match reply.status {
        200 => {
            report.ok += 1;
            if reply.header("tessera-cache") == Some("hit") {
                report.cache_hits += 1;
            }
            if let Some(min) = min_position
                && position < Some(min)
            {
                report.violations.push(format!(
                    "{name} asked at position {min} answered at {position:?}"
                ));
            }
        }
        404 if name == "account" && reply.body["error"]["code"] == "not_found" => {
            report.not_found += 1;
            // Seen opened at or before the position the answer was asked at: it must
            // be there.
            if let (Some(min), Some(opened)) = (min_position, opened_at)
                && opened <= min
            {
                report.violations.push(format!(
                    "{account} was opened at position {opened}, but account asked at \
                     position {min} answered 404 (at {position:?})"
                ));
            }
        }
        status if status >= 500 => {
            *report
                .server_errors
                .entry(server_error_kind(reply))
                .or_default() += 1;
        }
        status => report
            .violations
            .push(format!("{name} for {account}: {status} {}", reply.body)),
    }
}

/// What the admin client saw: deploys and rebuilds.
#[derive(Debug, Default)]
struct AdminReport {
    /// `PUT /plugins/{name}` answered 200.
    deploys_http: usize,
    /// Plugin files swapped into the plugins folder (picked up by the watcher).
    deploys_swapped: usize,
    /// `POST /projections/{name}/rebuild` answered 202.
    rebuilds: usize,
    /// Admin requests that got no whole answer (the host was killed).
    interrupted: usize,
    server_errors: BTreeMap<String, usize>,
    violations: Vec<String>,
    /// Per plugin, the digest of the variant it must serve after the last deploy
    /// (unknown after a deploy the kill interrupted, until the next one).
    expected_digests: BTreeMap<String, String>,
}

/// Variant `n` of a plugin: the plugin as built for 0, else the same code under
/// another digest.
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    match n {
        0 => bytes.to_vec(),
        n => with_custom_section(bytes, &format!("soak variant {n}")),
    }
}

/// The admin client: every few seconds a deploy (over HTTP, or a file swapped into
/// the folder) of another variant of a random plugin, and now and then a rebuild of a
/// random projection, until the soak stops.
async fn admin_client(shared: Arc<Shared>, mut rng: fastrand::Rng) -> Result<AdminReport> {
    let client = http_client()?;
    let mut report = AdminReport::default();
    let variants: Vec<Vec<Vec<u8>>> = BANK_PLUGINS
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).with_context(|| format!("read {path}"))?;
            Ok((0..VARIANTS).map(|n| variant(&bytes, n)).collect())
        })
        .collect::<Result<_>>()?;
    let mut serving: [Option<usize>; BANK_PLUGINS.len()] = [Some(0); BANK_PLUGINS.len()];
    while !shared.stopping() {
        tokio::time::sleep(Duration::from_millis(rng.u64(1500..=4500))).await;
        if shared.stopping() {
            break;
        }
        let answer = if rng.u8(..100) < 40 {
            let projection = *rng
                .choice(&BANK_PROJECTIONS)
                .expect("something to choose from");
            let sent = client
                .post(format!(
                    "{}/projections/{projection}/rebuild",
                    shared.target.get()
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await;
            match sent {
                Ok(response) => Reply::read(response).await.ok().map(|r| (r, 202)),
                Err(_) => None,
            }
        } else {
            let plugin = rng.usize(..BANK_PLUGINS.len());
            let now = serving[plugin].unwrap_or(0);
            let next = (now + rng.u64(1..=VARIANTS as u64 - 1) as usize) % VARIANTS;
            let bytes = variants[plugin][next].clone();
            let name = BANK_PLUGIN_NAMES[plugin];
            if rng.u8(..100) < 30 {
                install(&shared.plugins_dir, &format!("{name}.wasm"), &bytes);
                serving[plugin] = Some(next);
                report.deploys_swapped += 1;
                continue;
            }
            match Api::of(&client, &shared.target.get())
                .deploy(name, bytes, Some(ADMIN_TOKEN))
                .await
            {
                Ok(reply) => {
                    if reply.status == 200 {
                        serving[plugin] = Some(next);
                    }
                    Some((reply, 200))
                }
                Err(_) => {
                    // The file may or may not have been replaced before the kill.
                    serving[plugin] = None;
                    None
                }
            }
        };
        match answer {
            None => report.interrupted += 1,
            Some((reply, expected)) if reply.status == expected => {
                if expected == 202 {
                    report.rebuilds += 1;
                } else {
                    report.deploys_http += 1;
                }
            }
            Some((reply, _)) if reply.status >= 500 => {
                *report
                    .server_errors
                    .entry(server_error_kind(&reply))
                    .or_default() += 1;
            }
            Some((reply, _)) => report
                .violations
                .push(format!("admin request: {} {}", reply.status, reply.body)),
        }
    }
    for (plugin, variant) in serving.iter().enumerate() {
        if let Some(variant) = variant {
            report.expected_digests.insert(
                BANK_PLUGIN_NAMES[plugin].to_string(),
                hex::encode(Sha256::digest(&variants[plugin][*variant])),
            );
        }
    }
    Ok(report)
}

/// One sample of the host's resident memory.
#[derive(Debug, Clone, Copy)]
struct RssSample {
    run: usize,
    kib: u64,
}

/// Samples the serving process's `VmRSS` every [`RSS_EVERY`] until `done`.
async fn rss_sampler(shared: Arc<Shared>, done: Arc<AtomicBool>) -> Vec<RssSample> {
    let mut samples = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let current = *shared.current.lock().expect("current lock");
        if current.pid != 0
            && let Some(kib) = rss_kib(current.pid)
        {
            samples.push(RssSample {
                run: current.run,
                kib,
            });
        }
        tokio::time::sleep(RSS_EVERY).await;
    }
    samples
}

/// The RSS figures and their verdict.
#[derive(Debug)]
struct RssFigures {
    samples: usize,
    min_kib: u64,
    median_kib: u64,
    max_kib: u64,
    /// The median of each run's peak, over the first and the last third of the runs.
    early_peak_kib: u64,
    late_peak_kib: u64,
    /// The largest growth within one run (its peak less its first sample).
    largest_growth_kib: u64,
}

fn median(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[values.len() / 2]
}

fn rss_figures(samples: &[RssSample]) -> RssFigures {
    let mut all: Vec<u64> = samples.iter().map(|s| s.kib).collect();
    let mut runs: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for sample in samples {
        runs.entry(sample.run).or_default().push(sample.kib);
    }
    let peaks: Vec<u64> = runs
        .values()
        .map(|r| r.iter().copied().max().unwrap_or(0))
        .collect();
    let third = (peaks.len() / 3).max(1);
    let mut early = peaks[..third.min(peaks.len())].to_vec();
    let mut late = peaks[peaks.len().saturating_sub(third)..].to_vec();
    RssFigures {
        samples: samples.len(),
        min_kib: all.iter().copied().min().unwrap_or(0),
        max_kib: all.iter().copied().max().unwrap_or(0),
        median_kib: median(&mut all),
        early_peak_kib: median(&mut early),
        late_peak_kib: median(&mut late),
        largest_growth_kib: runs
            .values()
            .map(|r| r.iter().copied().max().unwrap_or(0) - r[0])
            .max()
            .unwrap_or(0),
    }
}

/// One invariant and its verdict.
#[derive(Debug)]
struct Verdict {
    name: &'static str,
    pass: bool,
    detail: String,
}

impl Verdict {
    fn of(name: &'static str, result: Result<String>) -> Verdict {
        match result {
            Ok(detail) => Verdict {
                name,
                pass: true,
                detail,
            },
            Err(error) => Verdict {
                name,
                pass: false,
                detail: format!("{error:#}"),
            },
        }
    }
}

/// Every event's correlation id is the key of the acknowledgement at its position, and
/// no refused key is in the log.
fn check_keys(events: &[Value], acks: &[Ack], refused: &[(String, String)]) -> Result<String> {
    let by_position: BTreeMap<u64, &str> = acks.iter().map(|a| (a.position, &*a.key)).collect();
    let refused: BTreeSet<&str> = refused.iter().map(|(key, _)| key.as_str()).collect();
    for event in events {
        let position = event["position"].as_u64().context("position")?;
        let key = event["metadata"]["correlation_id"].as_str().unwrap_or("");
        ensure!(
            by_position.get(&position) == Some(&key),
            "the event at {position} carries correlation id {key:?}, not the key of a command \
             acknowledged there ({:?})",
            by_position.get(&position)
        );
        ensure!(
            !refused.contains(key),
            "{key} was refused, but its event is at {position}"
        );
    }
    Ok(format!(
        "{} events, each the command of a key a client saw acknowledged; none of {} refused keys",
        events.len(),
        refused.len()
    ))
}

/// After the last deploy, every plugin file is served without error, and each plugin
/// serves the variant last deployed or swapped in (a swap is picked up by the folder
/// watcher, so within a bounded wait).
async fn check_plugins(host: &Binary, expected: &BTreeMap<String, String>) -> Result<String> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let body: Value = host
            .client
            .get(format!("{}/plugins", host.url))
            .send()
            .await?
            .json()
            .await?;
        let entries = body["plugins"].as_array().context("plugins")?;
        let served: BTreeMap<String, String> = entries
            .iter()
            .filter(|e| e["status"] == "active" && e["last_error"].is_null())
            .filter_map(|e| {
                Some((
                    e["plugin"]["name"].as_str()?.to_string(),
                    e["digest"].as_str()?.to_string(),
                ))
            })
            .collect();
        let names: BTreeSet<&str> = served.keys().map(String::as_str).collect();
        let all_served = entries.len() == BANK_PLUGIN_NAMES.len()
            && names == BANK_PLUGIN_NAMES.iter().copied().collect();
        let as_deployed = expected
            .iter()
            .all(|(name, digest)| served.get(name) == Some(digest));
        if all_served && as_deployed {
            return Ok(format!(
                "{} plugin files served, none in error; {} of them checked to serve the variant \
                 deployed last",
                entries.len(),
                expected.len()
            ));
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the plugins are not as deployed ({expected:?}): {last}")
}

fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Every report's figures added up.
#[derive(Debug, Default)]
struct Tally {
    /// Distinct commands sent.
    sent: usize,
    acks: Vec<Ack>,
    /// Distinct keys acknowledged.
    acknowledged: usize,
    refused: Vec<(String, String)>,
    retried: usize,
    replays: usize,
    own_reads: usize,
    lagging: usize,
    inline_reads: usize,
    inline_violations: Vec<String>,
    connection_failures: usize,
    queries: QueryReport,
    /// Every `5xx` any client got, by kind.
    server_errors: BTreeMap<String, usize>,
    violations: Vec<String>,
}

impl Tally {
    fn collect(
        commands: Vec<CommandReport>,
        queries: Vec<QueryReport>,
        admin: &AdminReport,
    ) -> Self {
        let mut tally = Tally::default();
        let add_errors = |errors: &BTreeMap<String, usize>, tally: &mut Tally| {
            for (kind, count) in errors {
                *tally.server_errors.entry(kind.clone()).or_default() += count;
            }
        };
        for report in commands {
            tally.sent += report.sent;
            tally.retried += report.retried;
            tally.replays += report.replays;
            tally.own_reads += report.own_reads;
            tally.lagging += report.lagging;
            tally.inline_reads += report.inline_reads;
            tally.inline_violations.extend(report.inline_violations);
            tally.connection_failures += report.attempts.connection_failures;
            add_errors(&report.attempts.server_errors, &mut tally);
            tally.acks.extend(report.acks);
            tally.refused.extend(report.refused);
            tally.violations.extend(report.violations);
        }
        for report in queries {
            let q = &mut tally.queries;
            q.sent += report.sent;
            q.ok += report.ok;
            q.not_found += report.not_found;
            q.cache_hits += report.cache_hits;
            q.with_min_position += report.with_min_position;
            q.interrupted += report.interrupted;
            add_errors(&report.server_errors, &mut tally);
            tally.violations.extend(report.violations);
        }
        add_errors(&admin.server_errors, &mut tally);
        tally.violations.extend(admin.violations.iter().cloned());
        let keys: BTreeSet<&str> = tally.acks.iter().map(|a| a.key.as_str()).collect();
        tally.acknowledged = keys.len();
        tally
    }
}

/// What the kills did.
#[derive(Debug, Default)]
struct Kills {
    done: usize,
    /// Kills whose moment fell while the host was still restarting.
    late: usize,
    restarts: Vec<Duration>,
    /// Every restart reported the unclean stop of the run before.
    unclean_reported: bool,
}

/// Kills the host at each moment of `schedule` (milliseconds after `started`), each
/// time checks that the run left its `RUNNING` marker, restarts it on the same
/// folders, and points the clients at the new run. Returns the last run.
async fn kill_on_schedule(
    mut host: Binary,
    shared: &Shared,
    folders: &Folders,
    extra: &[&str],
    schedule: &[u64],
    started: Instant,
) -> Result<(Binary, Kills)> {
    let mut kills = Kills {
        unclean_reported: true,
        ..Kills::default()
    };
    for at in schedule {
        let due = started + Duration::from_millis(*at);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        } else {
            kills.late += 1;
        }
        host.sigkill();
        kills.done += 1;
        shared.current.lock().expect("current lock").pid = 0;
        ensure!(
            folders.data.join("RUNNING").exists(),
            "kill {}: a SIGKILLed run leaves its RUNNING marker",
            kills.done
        );
        let restarting = Instant::now();
        host = Binary::start(&folders.data, &folders.plugins, &folders.log, extra).await?;
        kills.restarts.push(restarting.elapsed());
        shared.target.set(&host.url);
        *shared.current.lock().expect("current lock") = Current {
            run: kills.done,
            pid: host.pid,
        };
        kills.unclean_reported &= unclean_starts(&host) == kills.done;
    }
    Ok((host, kills))
}

/// PASS when `violations` is empty, with `detail`; else FAIL with the first few.
fn no_violations(name: &'static str, violations: &[String], detail: String) -> Verdict {
    Verdict::of(
        name,
        if violations.is_empty() {
            Ok(detail)
        } else {
            Err(anyhow::anyhow!(
                "{} violations, first: {:#?}",
                violations.len(),
                &violations[..violations.len().min(5)]
            ))
        },
    )
}

/// Every sample under the bound, and no upward trend of the runs' peaks.
fn rss_verdict(rss: &RssFigures, bound_kib: u64) -> Verdict {
    let name = "RSS stable: under the bound, no upward trend from run to run";
    Verdict::of(
        name,
        if rss.samples == 0 {
            Err(anyhow::anyhow!("no RSS sample"))
        } else if rss.max_kib > bound_kib {
            Err(anyhow::anyhow!(
                "peak {} MiB over the bound {} MiB",
                mib(rss.max_kib),
                bound_kib / 1024
            ))
        } else if rss.late_peak_kib > rss.early_peak_kib * 3 / 2 + 64 * 1024 {
            Err(anyhow::anyhow!(
                "the runs' peaks grew from a median of {} MiB (first third) to {} MiB (last third)",
                mib(rss.early_peak_kib),
                mib(rss.late_peak_kib)
            ))
        } else {
            Ok(format!(
                "peak {} MiB <= {} MiB; run peaks' median {} MiB (first third of runs) -> {} MiB \
                 (last third); largest growth within a run {} MiB",
                mib(rss.max_kib),
                bound_kib / 1024,
                mib(rss.early_peak_kib),
                mib(rss.late_peak_kib),
                mib(rss.largest_growth_kib)
            ))
        },
    )
}

/// Prints the summary from its JSON form, so the two never differ.
fn print_summary(summary: &Value, path: &Path) {
    let s = summary;
    let (c, q, k, r) = (&s["commands"], &s["queries"], &s["kills"], &s["rss_mib"]);
    eprintln!("\n== soak summary ({}) ==", path.display());
    eprintln!("seed           {}", s["seed"].as_str().unwrap_or(""));
    eprintln!("command        {}", s["command"].as_str().unwrap_or(""));
    eprintln!(
        "duration       {} s of load (stated {} s), final check {} s",
        s["duration_s"]["load"], s["duration_s"]["stated"], s["duration_s"]["final_check"]
    );
    eprintln!(
        "kills          {} ({} late), restart median {} ms, max {} ms",
        k["done"], k["late"], k["restart_ms"]["median"], k["restart_ms"]["max"]
    );
    eprintln!(
        "commands       {} sent, {} acknowledged, {} refused, {} retried with the same key, {} \
         replayed on purpose, {} connection failures",
        c["sent"],
        c["acknowledged"],
        c["refused"],
        c["retried_with_same_key"],
        c["replayed_on_purpose"],
        c["connection_failures"]
    );
    eprintln!(
        "queries        {} sent, {} ok, {} not found, {} cache hits, {} with min position, {} \
         interrupted",
        q["sent"],
        q["ok"],
        q["not_found"],
        q["cache_hits"],
        q["with_min_position"],
        q["interrupted"]
    );
    eprintln!(
        "deploys        {} over HTTP, {} swapped into the folder; rebuilds {}; {} admin \
         requests interrupted",
        s["deploys"]["http"], s["deploys"]["folder_swaps"], s["rebuilds"], s["admin_interrupted"]
    );
    eprintln!("events in log  {}", s["events_in_log"]);
    eprintln!("5xx by kind    {}", s["server_errors"]);
    eprintln!(
        "RSS            {} samples, min {} MiB, median {} MiB, max {} MiB (bound {} MiB)",
        r["samples"], r["min"], r["median"], r["max"], r["bound"]
    );
    for verdict in s["invariants"].as_array().into_iter().flatten() {
        eprintln!(
            "{}  {}: {}",
            if verdict["pass"] == true {
                "PASS"
            } else {
                "FAIL"
            },
            verdict["name"].as_str().unwrap_or(""),
            verdict["detail"].as_str().unwrap_or("")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the soak runs for minutes: `make soak`"]
async fn soak_mixed_load_with_kills_keeps_every_invariant() -> Result<()> {
    let settings = Settings::from_env()?;
    let folders = bank_folders()?;
    let binary = pin_binary(&folders.root)?;
    eprintln!(
        "soak: seed {:#x} (TESSERA_SOAK_SEED), {} s (TESSERA_SOAK_SECONDS), at least {} kills \
         (TESSERA_SOAK_KILLS), RSS bound {} MiB (TESSERA_SOAK_RSS_MIB), binary {} (a copy of {})",
        settings.seed,
        settings.duration.as_secs(),
        settings.kills,
        settings.rss_bound_kib / 1024,
        binary.display(),
        env!("CARGO_BIN_EXE_tessera")
    );
    let extra = ["--admin-token", ADMIN_TOKEN];
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let host = Binary::start(&folders.data, &folders.plugins, &folders.log, &extra).await?;
    let shared = Arc::new(Shared {
        seed: settings.seed,
        target: Target::new(&host.url),
        current: Mutex::new(Current {
            run: 0,
            pid: host.pid,
        }),
        stop: AtomicBool::new(false),
        acknowledged_head: AtomicU64::new(0),
        opened: Mutex::new(BTreeMap::new()),
        plugins_dir: folders.plugins.clone(),
    });

    // The load.
    let started = Instant::now();
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(rss_sampler(shared.clone(), sampling_done.clone()));
    let mut commands = JoinSet::new();
    for id in 0..COMMAND_CLIENTS {
        let rng = rng.fork();
        commands.spawn(command_client(id, shared.clone(), rng));
    }
    let mut queries = JoinSet::new();
    for _ in 0..QUERY_CLIENTS {
        queries.spawn(query_client(shared.clone(), rng.fork()));
    }
    let admin = tokio::spawn(admin_client(shared.clone(), rng.fork()));

    // The kills, at random moments over the duration; one that falls while the host
    // is still restarting from the previous kill happens as soon as it serves again.
    let duration_ms = settings.duration.as_millis().max(1) as u64;
    let mut schedule: Vec<u64> = (0..settings.kills)
        .map(|_| rng.u64(..duration_ms))
        .collect();
    schedule.sort_unstable();
    let (host, kills) =
        kill_on_schedule(host, &shared, &folders, &extra, &schedule, started).await?;
    let rest = (started + settings.duration).saturating_duration_since(Instant::now());
    tokio::time::sleep(rest).await;

    // The clients finish what they have in flight.
    shared.stop.store(true, Ordering::Relaxed);
    let mut command_reports = Vec::new();
    while let Some(report) = commands.join_next().await {
        command_reports.push(report??);
    }
    let mut query_reports = Vec::new();
    while let Some(report) = queries.join_next().await {
        query_reports.push(report??);
    }
    let admin = admin.await??;
    sampling_done.store(true, Ordering::Relaxed);
    let rss = rss_figures(&sampler.await?);
    let load_time = started.elapsed();
    let tally = Tally::collect(command_reports, query_reports, &admin);

    // The invariants.
    let mut verdicts = vec![Verdict::of(
        "kills: at least the stated number, each seen as unclean by the next run",
        if kills.done >= settings.kills && kills.unclean_reported {
            Ok(format!(
                "{} kills; every restart found the RUNNING marker and checked its stores",
                kills.done
            ))
        } else {
            Err(anyhow::anyhow!(
                "{} kills of {}; unclean stops all reported: {}",
                kills.done,
                settings.kills,
                kills.unclean_reported
            ))
        },
    )];
    let events = host.read_log().await?;
    verdicts.push(Verdict::of(
        "every acknowledged command is in the log exactly once, and nothing else is",
        check_log(&events, &tally.acks).map(|figures| {
            format!(
                "{} events for {} acknowledged keys ({} acknowledgements were replays)",
                figures.events, figures.acknowledged, figures.replays
            )
        }),
    ));
    verdicts.push(Verdict::of(
        "every event is a command a client sent (correlation id = its key)",
        check_keys(&events, &tally.acks, &tally.refused),
    ));
    verdicts.push(no_violations(
        "answers: never older than asked, reads see own writes, nothing unexpected",
        &tally.violations,
        format!(
            "{} query answers, {} reads of own writes at their position, {} replays",
            tally.queries.ok + tally.queries.not_found,
            tally.own_reads,
            tally.replays
        ),
    ));
    verdicts.push(no_violations(
        "inline read-your-writes: the next read after a 200 (not lagging) sees it",
        &tally.inline_violations,
        format!(
            "{} plain reads right after an acknowledgement; {} acknowledgements said lagging",
            tally.inline_reads, tally.lagging
        ),
    ));
    let undocumented: Vec<String> = tally
        .server_errors
        .iter()
        .filter(|(kind, _)| !DOCUMENTED_5XX.contains(&kind.as_str()))
        .map(|(kind, count)| format!("{count} x {kind}"))
        .collect();
    verdicts.push(no_violations(
        "no 5xx but the documented ones",
        &undocumented,
        format!("documented: {DOCUMENTED_5XX:?}"),
    ));
    verdicts.push(Verdict::of(
        "every plugin served after the deploys",
        check_plugins(&host, &admin.expected_digests).await,
    ));
    verdicts.push(rss_verdict(&rss, settings.rss_bound_kib));
    let comparing = Instant::now();
    let comparison = compare_with_rebuild(host, &folders, &events, &extra).await;
    let compare_time = comparing.elapsed();
    verdicts.push(Verdict::of(
        "read models equal a rebuild from the log",
        comparison.map(|c| {
            format!(
                "{} answers equal on both hosts at head {}, {} accounts, as the log folds",
                c.answers, c.head, c.accounts
            )
        }),
    ));

    let mut restart_ms: Vec<u64> = kills
        .restarts
        .iter()
        .map(|d| d.as_millis() as u64)
        .collect();
    let restart_max = restart_ms.iter().copied().max().unwrap_or(0);
    let q = &tally.queries;
    let summary = json!({
        "seed": format!("{:#x}", settings.seed),
        "command": format!(
            "TESSERA_SOAK_SEED={:#x} TESSERA_SOAK_SECONDS={} TESSERA_SOAK_KILLS={} make soak",
            settings.seed, settings.duration.as_secs(), settings.kills
        ),
        "binary": env!("CARGO_BIN_EXE_tessera"),
        "duration_s": { "stated": settings.duration.as_secs(), "load": seconds(load_time),
                        "final_check": seconds(compare_time) },
        "kills": { "done": kills.done, "stated": settings.kills, "late": kills.late,
                   "restart_ms": { "median": median(&mut restart_ms), "max": restart_max } },
        "commands": { "sent": tally.sent, "acknowledged": tally.acknowledged,
                      "refused": tally.refused.len(), "retried_with_same_key": tally.retried,
                      "replayed_on_purpose": tally.replays, "own_writes_read": tally.own_reads,
                      "inline_reads": tally.inline_reads, "acknowledged_lagging": tally.lagging,
                      "connection_failures": tally.connection_failures },
        "queries": { "sent": q.sent, "ok": q.ok, "not_found": q.not_found,
                     "cache_hits": q.cache_hits, "with_min_position": q.with_min_position,
                     "interrupted": q.interrupted },
        "deploys": { "http": admin.deploys_http, "folder_swaps": admin.deploys_swapped },
        "rebuilds": admin.rebuilds,
        "admin_interrupted": admin.interrupted,
        "events_in_log": events.len(),
        "server_errors": tally.server_errors,
        "rss_mib": { "samples": rss.samples, "min": mib(rss.min_kib), "median": mib(rss.median_kib),
                     "max": mib(rss.max_kib), "bound": settings.rss_bound_kib / 1024,
                     "run_peak_median_first_third": mib(rss.early_peak_kib),
                     "run_peak_median_last_third": mib(rss.late_peak_kib),
                     "largest_growth_in_a_run": mib(rss.largest_growth_kib) },
        "invariants": verdicts.iter().map(|v| json!({
            "name": v.name, "pass": v.pass, "detail": v.detail,
        })).collect::<Vec<_>>(),
    });
    let out = summary_path();
    let out_dir = out.parent().context("summary folder")?;
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
    // The host's log, every run's, outlives the soak's temporary folder.
    let kept_log = out_dir.join("tessera.log");
    std::fs::copy(&folders.log, &kept_log)?;
    print_summary(&summary, &out);

    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.pass)
        .map(|v| v.name)
        .collect();
    ensure!(
        failed.is_empty(),
        "the soak failed (seed {:#x}): {failed:?}; the host's log: {}",
        settings.seed,
        kept_log.display()
    );
    Ok(())
}

/// `target/soak/summary.json`: in the target folder of the binary under test.
fn summary_path() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_tessera"));
    binary
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"))
        .join("soak")
        .join("summary.json")
}
