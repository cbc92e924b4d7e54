//! The sandbox holds for SQL and for everything a plugin returns. A plugin's SQL runs
//! inside SQLite, in host code, where the Wasm deadline and memory bound do not
//! reach; these tests check the bounds the host sets there itself, and on what
//! plugins hand back:
//!
//! - time: an endless or merely very slow statement in a query, a projection's
//!   `setup` or `apply`, or an inline projection ends with its call, near the call's
//!   deadline; hundreds of them at once too; nothing keeps burning CPU afterwards;
//!   a hung projection loses its catch-up turn, and inline waits are bounded;
//! - memory: huge blobs, strings, rows and sorts fail their call alone and the host's
//!   resident memory stays within a bound;
//! - disk: a projection's database stops at its size bound, fails by policy, and
//!   `GET /projections` says why;
//! - the host's own tables: the `temp` schema is closed to guests, and after a
//!   restart nothing is applied twice;
//! - output: event types, event data, states and answers are held to the rules
//!   client input is held to; the state cache is bounded in bytes; guest logs are
//!   capped per call; a deploy over the upload limit gets the JSON error body;
//! - shutdown: SIGTERM stops the host within its bound whatever plugins are doing,
//!   with every acknowledged command durable.
//!
//! The plugins are under `plugins/testing/sql-*`. Most hosts run in this process with
//! short deadlines; what needs `/proc` (resident memory, CPU time), the log or a
//! signal runs the real binary (`crate::common::binary::Binary`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::binary::{Binary, proc_status_kib};
use crate::common::{Api, POLL, Reply, TestHost, fresh_id, is_error_body, plugins, short_limits};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::plugin::PluginLimits;
use tokio::task::JoinSet;

/// The deadline of every call in the in-process hosts, unless a test says otherwise.
const DEADLINE: Duration = Duration::from_millis(500);
/// How long past its deadline a cut call may take to answer: generous, for a noisy
/// machine. A statement that is not cut takes tens of seconds, or for ever.
const SLACK: Duration = Duration::from_secs(3);
/// The longest any single request of these tests may take: far past every bound, so
/// a statement that was not cut shows as a failed assertion, not a hung test.
const REQUEST_BOUND: Duration = Duration::from_secs(120);
/// The bound on the real binary's resident memory while plugins try to grow it.
const RSS_BOUND_MB: f64 = 400.0;

/// The plugins' names, as their `describe` says.
const SQL_PROJECTION: &str = "test-sql-projection";
const SQL_QUERY: &str = "test-sql-query";
const SETUP_SPIN: &str = "test-sql-setup-spin";
const SQL_INLINE: &str = "test-sql-inline";

/// The names of `test_sql_kit::MEMORY`, the memory-hungry statements.
const MEMORY: [&str; 9] = [
    "randomblob",
    "randomblob-2g",
    "zeroblob",
    "printf",
    "replace",
    "group-concat",
    "columns",
    "rows",
    "sort",
];

// --- Talking to a host -------------------------------------------------------------

/// Appends one event of `event_type` with `data` through `test-sql-commands`;
/// returns the reply.
async fn emit(api: &Api, event_type: &str, data: Value) -> Reply {
    let payload = json!({ "type": event_type, "data": data });
    api.command("sql-emit", &fresh_id("emit"), payload)
        .await
        .unwrap()
}

/// Like [`emit`], asserting success; returns the event's position.
async fn emit_ok(api: &Api, event_type: &str, data: Value) -> u64 {
    position(&emit(api, event_type, data).await)
}

/// Waits until projection `name`'s checkpoint has passed `position`.
async fn wait_past(api: &Api, name: &str, position: u64) -> Value {
    api.wait_projection(name, &format!("{name} past {position}"), |p| {
        p["checkpoint"].as_u64() >= Some(position)
    })
    .await
}

/// The events of one stream; empty if it does not exist.
async fn stream(api: &Api, stream: &str) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/streams/{stream}?limit=1000"))
        .await
        .unwrap();
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().expect("events")
}

/// The position of a successful command's last event.
#[track_caller]
fn position(reply: &Reply) -> u64 {
    reply.ok()["position"].as_u64().expect("position")
}

/// Asserts that a call that can only end at its deadline did, near it.
#[track_caller]
fn assert_near_deadline(took: Duration, deadline: Duration, what: &str) {
    assert!(
        took >= deadline,
        "{what} answered after {took:?}, before its {deadline:?} deadline"
    );
    assert!(
        took <= deadline + SLACK,
        "{what} answered after {took:?}, more than {SLACK:?} past its {deadline:?} deadline"
    );
}

/// Asserts a failed call: a 4xx or 5xx with the JSON error body.
#[track_caller]
fn assert_failed_alone(reply: &Reply, what: &str) {
    assert!(
        (400..600).contains(&reply.status),
        "{what} did not fail: {} {}",
        reply.status,
        reply.body
    );
    assert!(
        is_error_body(&reply.body),
        "{what}: not the JSON error body: {} {}",
        reply.status,
        reply.body
    );
}

/// Asserts a refused plugin output: a 5xx with the JSON error body.
#[track_caller]
fn assert_refused_output(reply: &Reply, what: &str) {
    assert!(
        (500..600).contains(&reply.status),
        "{what} was not refused: {} {}",
        reply.status,
        reply.body
    );
    assert!(
        is_error_body(&reply.body),
        "{what}: not the JSON error body: {}",
        reply.body
    );
}

/// Asserts that the bank serves: an account opens and takes a deposit.
async fn assert_bank_serves(api: &Api) {
    let id = fresh_id("bank");
    api.command("open-account", &id, json!({"owner": "ada"}))
        .await
        .unwrap()
        .ok();
    let deposit = api
        .command("deposit", &id, json!({"amount": 5}))
        .await
        .unwrap();
    assert_eq!(deposit.ok()["version"], 2, "{}", deposit.body);
}

/// Asserts that the SQL plugins serve what behaves: a command and a query.
async fn assert_sql_serves(api: &Api) {
    let ping = api
        .command("sql-ping", &fresh_id("ping"), json!({}))
        .await
        .unwrap();
    assert_eq!(ping.ok()["events"][0]["type"], "Pinged");
    let pong = api.query("sql-ping", "", &[]).await.unwrap();
    assert_eq!(pong.ok()["pong"], true, "{}", pong.body);
}

/// `sql-notes`: the SQL projection's `notes` rows, `counter` and `attempts` rows.
async fn notes(api: &Api) -> (u64, u64, u64) {
    let reply = api.query("sql-notes", "", &[]).await.unwrap();
    let body = reply.ok();
    (
        body["notes"].as_u64().expect("notes"),
        body["counter"].as_u64().expect("counter"),
        body["attempts"].as_u64().expect("attempts"),
    )
}

// --- Hosts ---------------------------------------------------------------------------

/// The plugins of most hosts here: the bank (commands and its inline projection)
/// and the SQL command handler, projection and query handler.
const SQL_PLUGINS: [&str; 5] = [
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::TEST_SQL_COMMANDS,
    plugins::TEST_SQL_PROJECTION,
    plugins::TEST_SQL_QUERY,
];

/// A host serving [`SQL_PLUGINS`] with [`DEADLINE`] for every call, changed by
/// `configure`, once the SQL projection is set up (its queries can read it).
async fn sql_host(configure: impl FnOnce(&mut tessera::Config)) -> TestHost {
    let host = host_with(&SQL_PLUGINS, |config| {
        config.limits = short_limits(DEADLINE);
        configure(config);
    })
    .await;
    host.with_timeout(REQUEST_BOUND)
        .wait_live_at_head(SQL_PROJECTION)
        .await;
    host
}

async fn host_with(plugins: &[&str], configure: impl FnOnce(&mut tessera::Config)) -> TestHost {
    TestHost::start_with(plugins, configure)
        .await
        .expect("host starts")
}

/// Limits for one plugin: a deadline and/or a disk bound.
fn plugin_limits(deadline: Option<Duration>, max_disk: Option<u64>) -> PluginLimits {
    PluginLimits {
        deadline,
        max_disk,
        ..PluginLimits::default()
    }
}

/// The folders of a real binary's run: plugins (copies of the given files), data,
/// and the log.
struct Run {
    _dir: TempDir,
    data: PathBuf,
    plugins: PathBuf,
    log: PathBuf,
}

impl Run {
    fn new(files: &[&str]) -> Run {
        let dir = TempDir::new().expect("temp dir");
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir).expect("plugins folder");
        for file in files {
            let name = Path::new(file).file_name().expect("file name");
            std::fs::copy(file, plugins_dir.join(name)).expect("copy plugin");
        }
        Run {
            data: dir.path().join("data"),
            log: dir.path().join("tessera.log"),
            plugins: plugins_dir,
            _dir: dir,
        }
    }

    async fn start(&self, extra: &[&str]) -> Binary {
        Binary::start(&self.data, &self.plugins, &self.log, extra)
            .await
            .expect("tessera starts")
    }

    /// Starts, stops and starts again, so that the plugins are compiled (and the
    /// compiler's memory spent) by a run that is over: the second run loads them from
    /// the compiled-code cache, and its resident memory is the host's own.
    async fn start_warm(&self, extra: &[&str]) -> Binary {
        let mut first = self.start(extra).await;
        first.sigterm().expect("SIGTERM");
        first
            .wait_exit(Duration::from_secs(60))
            .await
            .expect("the first run stops");
        self.start(extra).await
    }
}

// --- /proc -------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let kib =
        proc_status_kib(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib as f64 / 1024.0
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS")
}

/// The CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name is in parentheses and may hold spaces: fields follow the last.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 1..]
        .split_whitespace()
        .collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `fields[0]` is field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPU time the process uses over `window` of (what should be) idleness.
async fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    cpu_seconds(pid) - before
}

/// Samples a process's resident memory every few milliseconds on a thread of its own,
/// keeping the largest value seen.
struct RssWatch {
    largest_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let largest_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (largest_kb, stop) = (largest_kb.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        && let Some(kb) = status.lines().find_map(|line| {
                            line.strip_prefix("VmRSS:")?
                                .trim()
                                .strip_suffix("kB")?
                                .trim()
                                .parse::<u64>()
                                .ok()
                        })
                    {
                        largest_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssWatch {
            largest_kb,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest resident memory seen so far, in MiB.
    fn largest_mb(&self) -> f64 {
        self.largest_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                folder_bytes(&path)
            } else {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// What a projection's data folder may hold at a size bound of `bound` bytes: the
/// database, its WAL and shared memory.
fn disk_allowance(bound: u64) -> u64 {
    bound * 3 + (4 << 20)
}

// --- Time: statements end with their call ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_statement_in_a_query_answers_504_near_its_deadline() {
    let host = sql_host(|_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);

    // `sql-spin-retry` starts the statement again whenever it fails: the deadline
    // must end the call, not only the statement.
    for name in ["sql-spin", "sql-spin-retry", "sql-spin"] {
        let started = Instant::now();
        let reply = api
            .query(name, &format!("n={}", fresh_id("spin")), &[])
            .await
            .unwrap();
        let took = started.elapsed();
        reply.assert_error(504, "deadline_exceeded");
        assert_near_deadline(took, DEADLINE, name);
        // The same plugin, and everyone else, still serve.
        assert_sql_serves(&api).await;
    }
    assert_bank_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_that_ends_after_many_deadlines_of_work_is_cut_at_the_deadline() {
    let host = sql_host(|_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);

    // Counting to 400 million: tens of seconds of SQLite work, finite.
    let started = Instant::now();
    let reply = api.query("sql-slow", "", &[]).await.unwrap();
    let took = started.elapsed();
    reply.assert_error(504, "deadline_exceeded");
    assert_near_deadline(took, DEADLINE, "sql-slow");
    // A short count is answered: the statement is fine, only its length is not.
    let short = api.query("sql-slow", "n=1000", &[]).await.unwrap();
    assert_eq!(short.ok()["rows"][0]["n"], 1000, "{}", short.body);

    // The same statement in a projection's apply fails that event at its deadline.
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "stop", "max_attempts": 1}),
    )
    .await;
    let slow = emit_ok(&api, "SqlSlow", json!({})).await;
    let failed = api
        .wait_projection(SQL_PROJECTION, &format!("halted at {slow}"), |p| {
            p["halted"] == true && p["failed_at"].as_u64() == Some(slow)
        })
        .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("deadline"), "error {error:?} in {failed}");
    assert!(failed["checkpoint"].as_u64() < Some(slow), "{failed}");

    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_plugin_deadline_bounds_that_plugins_statements() {
    const ROOMY: Duration = Duration::from_secs(2);
    let host = sql_host(|config| {
        config
            .limits
            .per_plugin
            .insert(SQL_QUERY.into(), plugin_limits(Some(ROOMY), None));
    })
    .await;
    let api = host.with_timeout(REQUEST_BOUND);

    let started = Instant::now();
    let reply = api.query("sql-spin", "n=1", &[]).await.unwrap();
    let took = started.elapsed();
    reply.assert_error(504, "deadline_exceeded");
    assert_near_deadline(took, ROOMY, "sql-spin under a 2 s per-plugin deadline");
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_hung_queries_at_once_all_answer_504_while_others_are_served() {
    const HUNG: usize = 200;
    /// Long enough for the others to be served while all of them hang.
    const HUNG_DEADLINE: Duration = Duration::from_secs(5);
    /// How long past their deadline the last of them may answer: they share two
    /// cores.
    const ALL_SLACK: Duration = Duration::from_secs(25);
    /// How long one request that behaves may take meanwhile: it shares the two cores
    /// with two hundred statements until their deadline.
    const SERVE_BOUND: Duration = Duration::from_secs(15);
    let mut files = SQL_PLUGINS.to_vec();
    files.extend([plugins::BANK_TOTALS, plugins::BANK_QUERIES]);
    let host = host_with(&files, |config| {
        config.limits = short_limits(DEADLINE);
        config.limits.query_deadline = HUNG_DEADLINE;
    })
    .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;
    api.wait_live_at_head("bank-totals").await;

    let started = Instant::now();
    let mut hung = JoinSet::new();
    for n in 0..HUNG {
        let api = api.clone();
        hung.spawn(async move {
            let sent = Instant::now();
            let reply = api.query("sql-spin", &format!("n={n}"), &[]).await.unwrap();
            (n, reply, sent.elapsed())
        });
    }
    // While they hang, other plugins (the bank's command handler and query handler)
    // and the same ones serve, each request in bounded time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut served = Vec::new();
    while served.len() < 8 || started.elapsed() < HUNG_DEADLINE - Duration::from_secs(1) {
        let id = fresh_id("beside");
        let requests = [
            ("open-account", None),
            ("account", Some(format!("id={id}"))),
            ("sql-ping", None),
            ("sql-ping", Some(String::new())),
        ];
        // The account query reads the command's own write: under this load the
        // inline projection may answer the command's response late (it stops waiting
        // after its deadline), so the query names the command's position.
        let mut opened_at = 0;
        for (name, query) in requests {
            let sent = Instant::now();
            let reply = match &query {
                None => {
                    let reply = api
                        .command(name, &id, json!({"owner": "ada"}))
                        .await
                        .unwrap();
                    opened_at = reply.body["position"].as_u64().unwrap_or(0);
                    reply
                }
                Some(query) if name == "account" => {
                    let fresh = [("tessera-min-position", opened_at.to_string())];
                    api.query(name, query, &fresh).await.unwrap()
                }
                Some(query) => api.query(name, query, &[]).await.unwrap(),
            };
            let took = sent.elapsed();
            assert_eq!(
                reply.status, 200,
                "{name} beside hung queries: {}",
                reply.body
            );
            assert!(
                took < SERVE_BOUND,
                "{name} took {took:?} beside {HUNG} hung queries"
            );
            served.push(took);
        }
    }
    served.sort();

    let mut slowest = Duration::ZERO;
    while let Some(joined) = hung.join_next().await {
        let (n, reply, took) = joined.expect("task");
        reply.assert_error(504, "deadline_exceeded");
        assert!(
            took >= HUNG_DEADLINE,
            "hung query {n} answered after {took:?}"
        );
        slowest = slowest.max(took);
    }
    assert!(
        slowest <= HUNG_DEADLINE + ALL_SLACK,
        "the slowest of {HUNG} hung queries answered after {slowest:?}"
    );
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
    eprintln!(
        "{HUNG} hung queries: the slowest answered after {slowest:?}; {} requests served \
         meanwhile, median {:?}, slowest {:?}",
        served.len(),
        served[served.len() / 2],
        served[served.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_statements_in_a_projection_apply_fail_their_events_by_policy_alone() {
    let host = sql_host(|_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "skip", "max_attempts": 1}),
    )
    .await;

    let first = emit_ok(&api, "SqlNote", json!({})).await;
    let mut hostile = Vec::new();
    for event_type in ["SqlSpin", "SqlSpinRetry", "SqlSlow"] {
        hostile.push((event_type, emit_ok(&api, event_type, json!({})).await));
    }
    let last = emit_ok(&api, "SqlNote", json!({})).await;

    // The bank is served while the projection is stuck.
    assert_bank_serves(&api).await;
    let started = Instant::now();
    wait_past(&api, SQL_PROJECTION, last).await;
    let took = started.elapsed();
    // Each hostile event costs a few attempts of one deadline each, no more.
    assert!(
        took < Duration::from_secs(60),
        "three hung events took {took:?} to be parked"
    );

    let parked = api.parked(SQL_PROJECTION).await.unwrap();
    for (event_type, at) in &hostile {
        let entry = parked
            .iter()
            .find(|p| p["position"].as_u64() == Some(*at))
            .unwrap_or_else(|| panic!("{event_type} at {at} is not parked: {parked:?}"));
        assert_eq!(entry["event_type"], *event_type, "{entry}");
        let error = entry["error"].as_str().unwrap_or_default();
        assert!(error.contains("deadline"), "{event_type}: {error:?}");
    }
    // The honest events around them are applied, once each.
    assert!(first < last);
    let (notes, counter, _) = notes(&api).await;
    assert_eq!((notes, counter), (2, 2));
    api.wait_live_at_head(SQL_PROJECTION).await;
    api.wait_live_at_head("account-balance").await;
    assert_sql_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_projection_loses_its_catch_up_turn_and_one_deployed_meanwhile_catches_up() {
    let host = host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_QUERIES,
            plugins::TEST_SQL_COMMANDS,
        ],
        |config| config.limits = short_limits(DEADLINE),
    )
    .await;
    let api = host.with_timeout(REQUEST_BOUND);

    // A log long enough that a projection deployed now is catching up (and takes
    // catch-up turns): a few accounts, a hung event for the SQL projection early on,
    // and many events nobody consumes.
    for n in 0..3 {
        api.command(
            "open-account",
            &format!("turns-{n}"),
            json!({"owner": "ada"}),
        )
        .await
        .unwrap()
        .ok();
    }
    emit_ok(&api, "SqlSpin", json!({})).await;
    let filler = api
        .command(
            "sql-emit",
            "filler",
            json!({"type": "Filler", "count": 2000}),
        )
        .await
        .unwrap();
    let head = position(&filler);
    assert!(head > 2000);

    // Two projections that hang in SQL: one in setup (for ever: setup is retried
    // until it succeeds), one in apply (at the `SqlSpin` event).
    api.deploy_file(SETUP_SPIN, plugins::TEST_SQL_SETUP_SPIN)
        .await;
    api.deploy_file(SQL_PROJECTION, plugins::TEST_SQL_PROJECTION)
        .await;
    api.wait_projection(SETUP_SPIN, "the setup-spin projection started", |_| true)
        .await;
    api.wait_projection(SQL_PROJECTION, "the SQL projection started", |_| true)
        .await;
    // Long enough for both to be inside their endless statements.
    tokio::time::sleep(DEADLINE * 2).await;

    // Deployed meanwhile, an honest projection catches up all the same.
    let started = Instant::now();
    api.deploy_file("bank-totals", plugins::BANK_TOTALS).await;
    let totals = api
        .wait_projection("bank-totals", "bank-totals live at the head", |p| {
            p["status"] == "live" && p["checkpoint"].as_u64() >= Some(head)
        })
        .await;
    assert_eq!(totals["role"], "active", "{totals}");
    let took = started.elapsed();
    let reply = api.query("totals", "", &[]).await.unwrap();
    assert_eq!(reply.ok()["open_accounts"], 3, "{}", reply.body);

    // The hung ones are failing, saying why, and not live.
    let spin = api
        .projection(SETUP_SPIN)
        .await
        .unwrap()
        .expect("setup-spin listed");
    assert_ne!(spin["status"], "live", "{spin}");
    let error = spin["error"].as_str().unwrap_or_default();
    assert!(error.contains("deadline"), "setup-spin: {spin}");
    let stuck = api
        .projection(SQL_PROJECTION)
        .await
        .unwrap()
        .expect("listed");
    assert!(stuck["checkpoint"].as_u64() < Some(head), "{stuck}");
    assert_bank_serves(&api).await;
    eprintln!("bank-totals caught up {head} events beside two hung projections in {took:?}");
}

/// A host serving the bank, the SQL command handler and the hostile inline
/// projection, with [`DEADLINE`] for every call.
async fn inline_host() -> TestHost {
    let host = host_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::TEST_SQL_COMMANDS,
            plugins::TEST_SQL_INLINE,
        ],
        |config| config.limits = short_limits(DEADLINE),
    )
    .await;
    host.with_timeout(REQUEST_BOUND)
        .wait_live_at_head(SQL_INLINE)
        .await;
    host
}

/// Sends `event_type` for the inline projection and then commands of every kind, and
/// asserts each is answered, lagging, within about the projection's deadline.
async fn assert_inline_wait_is_bounded(event_type: &str) {
    let host = inline_host().await;
    let api = host.with_timeout(REQUEST_BOUND);
    // An honest one first: commands wait for it, and it keeps up.
    let note = emit(&api, "InlineNote", json!({})).await;
    note.ok();
    assert_eq!(note.header("tessera-inline"), None, "{:?}", note.headers);

    let started = Instant::now();
    let stuck = emit(&api, event_type, json!({})).await;
    let took = started.elapsed();
    stuck.ok();
    assert_eq!(stuck.header("tessera-inline"), Some("lagging"));
    assert!(
        took <= DEADLINE + SLACK,
        "the command behind a stuck inline projection took {took:?}"
    );

    // Every later command waits for the stuck projection too: no longer than that.
    for n in 0..3 {
        let id = fresh_id("inline");
        for (name, payload) in [
            ("open-account", json!({"owner": "ada"})),
            ("deposit", json!({"amount": n + 1})),
            ("sql-ping", json!({})),
        ] {
            let started = Instant::now();
            let reply = api.command(name, &id, payload).await.unwrap();
            let took = started.elapsed();
            reply.ok();
            assert_eq!(reply.header("tessera-inline"), Some("lagging"), "{name}");
            assert!(
                took <= DEADLINE + SLACK,
                "{name} behind a stuck inline projection took {took:?}"
            );
        }
    }
    let status = api.projection(SQL_INLINE).await.unwrap().expect("listed");
    assert_ne!(status["status"], "live", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_projection_hung_in_sql_holds_commands_no_longer_than_its_deadline() {
    assert_inline_wait_is_bounded("InlineSpin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_inline_projection_holds_commands_no_longer_than_its_deadline() {
    assert_inline_wait_is_bounded("InlineFail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_statement_burns_cpu_after_its_call_has_ended() {
    let run = Run::new(&SQL_PLUGINS);
    let host = run
        .start(&[
            "--query-deadline-ms",
            "500",
            "--projection-deadline-ms",
            "500",
        ])
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;

    // Hung queries, and a projection hung in apply until it halts.
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "stop", "max_attempts": 1}),
    )
    .await;
    let spin = emit_ok(&api, "SqlSpin", json!({})).await;
    let mut hung = JoinSet::new();
    for n in 0..8 {
        let api = api.clone();
        hung.spawn(async move { api.query("sql-spin", &format!("n={n}"), &[]).await.unwrap() });
    }
    while let Some(reply) = hung.join_next().await {
        reply.expect("task").assert_error(504, "deadline_exceeded");
    }
    api.wait_projection(SQL_PROJECTION, &format!("halted at {spin}"), |p| {
        p["halted"] == true && p["failed_at"].as_u64() == Some(spin)
    })
    .await;

    // Every call has ended: the host idles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_over(host.pid, Duration::from_secs(2)).await;
    assert!(
        cpu < 0.8,
        "the host used {cpu:.2} s of CPU in 2 s after its hung calls ended"
    );
    assert_sql_serves(&api).await;
}

/// From the issue rather than the brief: "no statement outlives its call: a call that
/// ended, a client that went away, a SIGTERM".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_whose_client_went_away_does_not_keep_burning_cpu() {
    let run = Run::new(&SQL_PLUGINS);
    let host = run
        .start(&["--plugin-limit", "test-sql-query:deadline_ms=600000"])
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;

    // Clients that give up after a second on queries that would run ten minutes.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    for n in 0..2 {
        let sent = impatient
            .get(format!("{}/queries/sql-spin?n={n}", host.url))
            .send()
            .await;
        assert!(sent.is_err(), "the endless query answered: {sent:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_over(host.pid, Duration::from_secs(2)).await;
    assert!(
        cpu < 0.8,
        "the host used {cpu:.2} s of CPU in 2 s after the clients went away"
    );
    let pong = api.query("sql-ping", "", &[]).await.unwrap();
    assert_eq!(pong.ok()["pong"], true);
}

// --- Memory ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_hungry_statements_fail_their_call_alone_and_the_host_stays_small() {
    let run = Run::new(&SQL_PLUGINS);
    // SQLite may hold 128 MiB in all; every plugin instance 64 MiB.
    let host = run.start_warm(&["--sqlite-heap-mb", "128"]).await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "skip", "max_attempts": 1}),
    )
    .await;
    let baseline = rss_mb(host.pid);
    let watch = RssWatch::start(host.pid);

    // In queries: each fails alone, and the plugin serves the next one.
    for what in MEMORY {
        let reply = api
            .query("sql-memory", &format!("what={what}"), &[])
            .await
            .unwrap();
        assert_failed_alone(&reply, &format!("sql-memory {what}"));
        eprintln!(
            "query {what}: {} {}; {:.0} MiB resident at most so far",
            reply.status,
            reply.body["error"]["code"],
            watch.largest_mb()
        );
        assert!(
            watch.largest_mb() < RSS_BOUND_MB,
            "after query {what}: {:.0} MiB resident (started at {baseline:.0} MiB)",
            watch.largest_mb()
        );
        assert_sql_serves(&api).await;
    }

    // In a projection's apply: each event fails and is parked, the next applied.
    let mut fed = Vec::new();
    for what in MEMORY {
        fed.push((
            what,
            emit_ok(&api, "SqlMemory", json!({ "what": what })).await,
        ));
    }
    let last = emit_ok(&api, "SqlNote", json!({})).await;
    wait_past(&api, SQL_PROJECTION, last).await;
    let parked = api.parked(SQL_PROJECTION).await.unwrap();
    for (what, at) in &fed {
        assert!(
            parked.iter().any(|p| p["position"].as_u64() == Some(*at)),
            "SqlMemory {what} at {at} was not parked: {parked:?}"
        );
    }
    assert_eq!(notes(&api).await.1, 1);
    eprintln!(
        "projection: {:.0} MiB resident at most so far",
        watch.largest_mb()
    );

    let largest = watch.largest_mb();
    assert!(
        largest < RSS_BOUND_MB,
        "the host reached {largest:.0} MiB resident (started at {baseline:.0} MiB)"
    );
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
    eprintln!("resident memory: {baseline:.0} MiB at start, {largest:.0} MiB at most");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_aggregate_states_do_not_grow_the_host_without_bound() {
    /// 200 streams of 4 MiB states: 800 MiB if every state were kept.
    const STREAMS: usize = 200;
    const STATE_MB: u64 = 4;
    let run = Run::new(&[plugins::TEST_SQL_COMMANDS]);
    let host = run.start_warm(&[]).await;
    let api = host.with_timeout(REQUEST_BOUND);
    let baseline = rss_mb(host.pid);

    let mut streams = JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let (api, next) = (api.clone(), next.clone());
        streams.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= STREAMS {
                    return;
                }
                let id = format!("fat-{n}");
                api.command("sql-fatten", &id, json!({ "mb": STATE_MB }))
                    .await
                    .unwrap()
                    .ok();
                // Folding the event makes the state that the cache keeps.
                let reply = api.command("sql-ping", &id, json!({})).await.unwrap();
                assert_eq!(reply.ok()["version"], 2, "{}", reply.body);
            }
        });
    }
    while let Some(done) = streams.join_next().await {
        done.expect("task");
    }
    let rss = rss_mb(host.pid);
    assert!(
        rss < RSS_BOUND_MB,
        "after {STREAMS} states of {STATE_MB} MiB the host holds {rss:.0} MiB \
         (started at {baseline:.0} MiB)"
    );
    // A cached state or not, the next command on a fat stream is right.
    let reply = api.command("sql-ping", "fat-0", json!({})).await.unwrap();
    assert_eq!(reply.ok()["version"], 3);
    eprintln!("resident memory: {baseline:.0} MiB at start, {rss:.0} MiB after");
}

// --- Disk --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projection_that_fills_its_disk_bound_halts_and_says_why() {
    const BOUND: u64 = 16 << 20;
    let host = sql_host(|config| {
        config.limits.max_disk = BOUND;
        // Long enough to write far past the bound: the bound must stop it.
        config.limits.projection_deadline = Duration::from_secs(60);
    })
    .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "stop", "max_attempts": 1}),
    )
    .await;
    let note = emit_ok(&api, "SqlNote", json!({})).await;
    wait_past(&api, SQL_PROJECTION, note).await;

    let fill = emit_ok(&api, "FillDisk", json!({"mb": 300})).await;
    let halted = api
        .wait_projection(SQL_PROJECTION, &format!("halted at {fill}"), |p| {
            p["halted"] == true && p["failed_at"].as_u64() == Some(fill)
        })
        .await;
    assert_eq!(halted["status"], "failed", "{halted}");
    let error = halted["error"].as_str().unwrap_or_default();
    assert!(error.contains("size bound"), "error {error:?} in {halted}");

    let folder = host.data_dir().join("projections").join(SQL_PROJECTION);
    let bytes = folder_bytes(&folder);
    assert!(
        bytes <= disk_allowance(BOUND),
        "{} holds {} MiB at a {} MiB bound",
        folder.display(),
        bytes >> 20,
        BOUND >> 20
    );
    // Its read model is still readable, and the others go on.
    assert_eq!(notes(&api).await, (1, 1, 0));
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
    api.wait_live_at_head("account-balance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_plugin_disk_bound_parks_the_event_that_fills_it_and_the_projection_goes_on() {
    const BOUND: u64 = 8 << 20;
    let host = sql_host(|config| {
        config.limits.per_plugin.insert(
            SQL_PROJECTION.into(),
            plugin_limits(Some(Duration::from_secs(60)), Some(BOUND)),
        );
    })
    .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "skip", "max_attempts": 1}),
    )
    .await;

    let fill = emit_ok(&api, "FillDisk", json!({"mb": 200})).await;
    let note = emit_ok(&api, "SqlNote", json!({})).await;
    wait_past(&api, SQL_PROJECTION, note).await;

    let parked = api.parked(SQL_PROJECTION).await.unwrap();
    let entry = parked
        .iter()
        .find(|p| p["position"].as_u64() == Some(fill))
        .unwrap_or_else(|| panic!("the fill at {fill} is not parked: {parked:?}"));
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains("size bound"), "{entry}");
    assert_eq!(notes(&api).await.1, 1, "the note after the fill is applied");

    let folder = host.data_dir().join("projections").join(SQL_PROJECTION);
    let bytes = folder_bytes(&folder);
    assert!(
        bytes <= disk_allowance(BOUND),
        "{} holds {} MiB at a {} MiB bound",
        folder.display(),
        bytes >> 20,
        BOUND >> 20
    );
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
}

/// A projection that swallows the error of a statement SQLite answered by rolling
/// the whole batch back (a full database, memory exhausted) and goes on: what it
/// does next must still commit together with the checkpoint, once, or not at all, and
/// the event must still be handled by policy rather than retried for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projection_that_swallows_a_full_disk_or_memory_error_still_commits_all_or_nothing() {
    let run = Run::new(&SQL_PLUGINS);
    let host = run
        .start(&[
            "--sqlite-heap-mb",
            "128",
            "--plugin-limit",
            "test-sql-projection:disk_mb=8,deadline_ms=60000",
        ])
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "skip", "max_attempts": 1}),
    )
    .await;

    let quiet = json!({"quiet": true, "then_note": true});
    let fill = emit_ok(
        &api,
        "FillDisk",
        json!({"mb": 200, "quiet": true, "then_note": true}),
    )
    .await;
    let mut memory = quiet.clone();
    memory["what"] = json!("columns");
    let columns = emit_ok(&api, "SqlMemory", memory).await;
    let last = emit_ok(&api, "SqlNote", json!({})).await;

    // Whether the host commits what fitted or parks the event, it gets past both.
    let started = Instant::now();
    let mut status = api.projection(SQL_PROJECTION).await.unwrap();
    while started.elapsed() < Duration::from_secs(30)
        && status
            .as_ref()
            .is_none_or(|s| s["checkpoint"].as_u64() < Some(last))
    {
        tokio::time::sleep(POLL).await;
        status = api.projection(SQL_PROJECTION).await.unwrap();
    }
    // Each note is counted once: `notes` has one row per position, and `counter`
    // rises on every apply that was committed, in a batch or outside one.
    let (notes, counter, _) = notes(&api).await;
    assert_eq!(
        notes, counter,
        "notes committed outside their batch (applied more than once); status: {status:?}"
    );
    let status = status.expect("listed");
    assert!(
        status["checkpoint"].as_u64() >= Some(last),
        "stuck before {last} (fill at {fill}, columns at {columns}): {status}"
    );
    assert!((1..=3).contains(&counter), "{counter} notes");
    assert_sql_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_disk_bounds_are_set_from_the_command_line() {
    const BOUND: u64 = 8 << 20;
    let run = Run::new(&SQL_PLUGINS);
    // The per-plugin bound is below the global one: the folder shows which applies.
    let host = run
        .start(&[
            "--max-disk-mb",
            "64",
            "--plugin-limit",
            "test-sql-projection:disk_mb=8,deadline_ms=60000",
        ])
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;
    api.set_policy(
        SQL_PROJECTION,
        json!({"on_failure": "stop", "max_attempts": 1}),
    )
    .await;

    let fill = emit_ok(&api, "FillDisk", json!({"mb": 200})).await;
    let halted = api
        .wait_projection(SQL_PROJECTION, &format!("halted at {fill}"), |p| {
            p["halted"] == true && p["failed_at"].as_u64() == Some(fill)
        })
        .await;
    let error = halted["error"].as_str().unwrap_or_default();
    assert!(error.contains("size bound"), "error {error:?} in {halted}");
    let folder = run.data.join("projections").join(SQL_PROJECTION);
    let bytes = folder_bytes(&folder);
    assert!(
        bytes <= disk_allowance(BOUND),
        "{} holds {} MiB at an 8 MiB bound",
        folder.display(),
        bytes >> 20
    );
    assert_sql_serves(&api).await;
}

// --- The host's own tables ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temp_schema_tricks_are_denied_and_nothing_is_applied_twice_after_a_restart() {
    let host = sql_host(|_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);

    for _ in 0..3 {
        emit_ok(&api, "SqlNote", json!({})).await;
    }
    emit_ok(&api, "TempTrick", json!({})).await;
    for _ in 0..3 {
        emit_ok(&api, "SqlNote", json!({})).await;
    }
    api.wait_live_at_head(SQL_PROJECTION).await;

    // Every trick was denied.
    let reply = api.query("sql-attempts", "", &[]).await.unwrap();
    let attempts = reply.ok()["attempts"]
        .as_array()
        .cloned()
        .expect("attempts");
    assert!(attempts.len() >= 20, "too few attempts: {attempts:?}");
    for attempt in &attempts {
        let outcome = attempt["outcome"].as_str().unwrap_or_default();
        assert!(outcome.starts_with("denied"), "allowed: {attempt}");
    }
    assert_eq!(notes(&api).await, (6, 6, attempts.len() as u64));

    // On the read side too, and nothing a query did shadows what the next one reads.
    let reply = api.query("sql-temp-tricks", "", &[]).await.unwrap();
    for attempt in reply.ok()["attempts"].as_array().expect("attempts") {
        let outcome = attempt["outcome"].as_str().unwrap_or_default();
        assert!(
            outcome.starts_with("denied"),
            "allowed on the read side: {attempt}"
        );
    }
    for _ in 0..4 {
        assert_eq!(
            notes(&api).await.0,
            6,
            "a query reads what another one made"
        );
    }

    // After a restart, the projection goes on from where it really was.
    let host = host.restart().await.expect("restart");
    let api = host.with_timeout(REQUEST_BOUND);
    emit_ok(&api, "SqlNote", json!({})).await;
    emit_ok(&api, "SqlNote", json!({})).await;
    let status = api.wait_live_at_head(SQL_PROJECTION).await;
    assert_eq!(
        status["checkpoint"].as_u64(),
        Some(api.head().await.unwrap()),
        "{status}"
    );
    assert_eq!(
        notes(&api).await,
        (8, 8, attempts.len() as u64),
        "events applied twice, or the tricks ran again"
    );
    assert_sql_serves(&api).await;
}

// --- What plugins return ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_guest_output_is_refused_and_nothing_is_stored() {
    let host = sql_host(|_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);

    // Event types: 1-128 characters of ASCII letters, digits and `-_.:`.
    let long = "T".repeat(129);
    for bad in [
        "line\nbreak",
        "carriage\rreturn",
        "nul\u{0}byte",
        "\u{1b}[31mred",
        "tab\there",
        "with space",
        "slash/type",
        "quote\"type",
        "caf\u{e9}",
        "",
        long.as_str(),
    ] {
        let reply = emit(&api, bad, json!({})).await;
        assert_refused_output(&reply, &format!("event type {bad:?}"));
    }
    for good in ["T".repeat(128), "Ok.type:v1-a_b9".to_string()] {
        emit(&api, &good, json!({})).await.ok();
    }

    // Event data: JSON nested at most 64 deep.
    for depth in [65, 100, 5000, 100_000] {
        let id = fresh_id("deep");
        let reply = api
            .command("sql-deep-data", &id, json!({ "depth": depth }))
            .await
            .unwrap();
        assert_refused_output(&reply, &format!("event data {depth} deep"));
        assert!(stream(&api, &format!("sql-{id}")).await.is_empty());
    }
    api.command("sql-deep-data", &fresh_id("deep"), json!({"depth": 64}))
        .await
        .unwrap()
        .ok();

    // States: `apply` must return JSON, nested at most 64 deep. The event that makes
    // the bad state is stored (nothing is wrong with it); the next command on the
    // stream fails, and appends nothing.
    for (command, payload) in [
        ("sql-spoil-state", json!({})),
        ("sql-deepen-state", json!({"depth": 1000})),
        ("sql-deepen-state", json!({"depth": 64})),
    ] {
        let id = fresh_id("state");
        api.command(command, &id, payload.clone())
            .await
            .unwrap()
            .ok();
        let reply = api.command("sql-ping", &id, json!({})).await.unwrap();
        assert_refused_output(&reply, &format!("the state after {command} {payload}"));
        assert_eq!(stream(&api, &format!("sql-{id}")).await.len(), 1);
    }

    // Answers: JSON nested at most 64 deep.
    for depth in [65, 1000, 100_000] {
        let reply = api
            .query("sql-deep-answer", &format!("depth={depth}"), &[])
            .await
            .unwrap();
        assert_refused_output(&reply, &format!("an answer {depth} deep"));
    }
    api.query("sql-deep-answer", "depth=64", &[])
        .await
        .unwrap()
        .ok();

    // The log is readable by anyone, and holds only types by the rules.
    let log = api.read_log().await.unwrap();
    for event in &log {
        let event_type = event["type"].as_str().expect("type");
        assert!(
            (1..=128).contains(&event_type.len())
                && event_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "stored event type {event_type:?}"
        );
    }
    assert_sql_serves(&api).await;
    assert_bank_serves(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_flood_is_capped_per_call_and_the_rest_counted() {
    const LOG_BOUND: u64 = 2 << 20;
    let run = Run::new(&[plugins::TEST_SQL_COMMANDS]);
    let host = run
        .start(&["--plugin-limit", "test-sql-commands:deadline_ms=120000"])
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    let before = std::fs::metadata(&run.log).map(|m| m.len()).unwrap_or(0);

    // 100 MiB through `log`, then 100 MiB through each of stdout, stderr and `log`.
    for (mb, via) in [(100, "log"), (100, "all")] {
        let reply = api
            .command(
                "sql-flood",
                &fresh_id("flood"),
                json!({ "mb": mb, "via": via }),
            )
            .await
            .unwrap();
        assert_eq!(reply.ok()["events"][0]["type"], "Flooded", "{}", reply.body);
    }
    let grown = std::fs::metadata(&run.log).map(|m| m.len()).unwrap_or(0) - before;
    assert!(
        grown < LOG_BOUND,
        "two floods wrote {} KiB to the host's log",
        grown >> 10
    );
    let text = host.log_text();
    assert!(
        text.contains("dropped"),
        "no note of the dropped lines:\n{}",
        host.log_tail()
    );
    eprintln!(
        "two floods of 100 MiB and 300 MiB grew the log by {} KiB; {} lines mention \"dropped\"",
        grown >> 10,
        text.lines().filter(|l| l.contains("dropped")).count()
    );
    let pong = api
        .command("sql-ping", "after-flood", json!({}))
        .await
        .unwrap();
    pong.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_over_64_mib_is_413_with_the_json_error_body() {
    let host = host_with(&[plugins::BANK_ACCOUNT, plugins::ACCOUNT_BALANCE], |_| {}).await;
    let api = host.with_timeout(REQUEST_BOUND);

    let reply = api
        .deploy("too-big", vec![0u8; (64 << 20) + 1024], None)
        .await
        .unwrap();
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(is_error_body(&reply.body), "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "payload_too_large");

    let listing = api.request(reqwest::Method::GET, "/plugins").await.unwrap();
    assert!(
        !listing.body.to_string().contains("too-big"),
        "{}",
        listing.body
    );
    assert_bank_serves(&api).await;
}

// --- Shutdown -------------------------------------------------------------------------------

/// Acknowledged commands: (position, stream, type).
type Acks = Vec<(u64, String, String)>;

async fn acknowledge(api: &Api, acks: &mut Acks, count: usize) {
    for _ in 0..count {
        let id = fresh_id("ack");
        let reply = api.command("sql-ping", &id, json!({})).await.unwrap();
        acks.push((position(&reply), format!("sql-{id}"), "Pinged".into()));
        let reply = api
            .command("open-account", &id, json!({"owner": "ada"}))
            .await
            .unwrap();
        acks.push((
            position(&reply),
            format!("account-{id}"),
            "AccountOpened".into(),
        ));
    }
}

/// Hangs the host every way at once: a projection in an endless statement, and
/// endless queries in flight. Returns the queries.
async fn hang_everything(api: &Api) -> JoinSet<Option<Reply>> {
    emit_ok(api, "SqlSpin", json!({})).await;
    let mut queries = JoinSet::new();
    for n in 0..3 {
        let (client, url) = (api.client.clone(), api.url.clone());
        queries.spawn(async move {
            let sent = client
                .get(format!("{url}/queries/sql-spin?n={n}"))
                .send()
                .await
                .ok()?;
            Reply::read(sent).await.ok()
        });
    }
    // Long enough for the queries and the projection to be inside their statements.
    tokio::time::sleep(Duration::from_secs(1)).await;
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_the_host_in_bounded_time_whatever_plugins_do() {
    let run = Run::new(&SQL_PLUGINS);
    let long = [
        "--plugin-limit",
        "test-sql-query:deadline_ms=600000",
        "--plugin-limit",
        "test-sql-projection:deadline_ms=600000",
    ];
    let mut host = run.start(&long).await;
    let api = host.with_timeout(REQUEST_BOUND);
    api.wait_live_at_head(SQL_PROJECTION).await;
    let mut acks = Acks::new();
    acknowledge(&api, &mut acks, 5).await;
    let queries = hang_everything(&api).await;
    // Commands are served while the plugins hang, and acknowledged.
    acknowledge(&api, &mut acks, 5).await;

    // The default bound: 10 s.
    let started = Instant::now();
    host.sigterm().expect("SIGTERM");
    let status = host
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits");
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(10) + Duration::from_secs(8),
        "SIGTERM took {took:?} (exit {status}); log:\n{}",
        host.log_tail()
    );
    drop(queries);
    eprintln!("SIGTERM under the default bound: exited after {took:?} with {status}");

    // Every acknowledged command is in the log. The next run has a bound of its own,
    // set on the command line.
    let mut host = run
        .start(&[&long[..], &["--shutdown-timeout-ms", "2000"]].concat())
        .await;
    let api = host.with_timeout(REQUEST_BOUND);
    assert_acknowledged(&api, &acks).await;

    // The same hang, stopped within that bound.
    let queries = hang_everything(&api).await;
    acknowledge(&api, &mut acks, 2).await;
    let started = Instant::now();
    host.sigterm().expect("SIGTERM");
    let status = host
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits");
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(2) + Duration::from_secs(5),
        "SIGTERM with a 2 s bound took {took:?} (exit {status}); log:\n{}",
        host.log_tail()
    );
    drop(queries);
    eprintln!("SIGTERM under a 2 s bound: exited after {took:?} with {status}");

    let host = run.start(&[]).await;
    assert_acknowledged(&host.with_timeout(REQUEST_BOUND), &acks).await;
}

/// Asserts that every acknowledged command's event is in the log, as acknowledged.
async fn assert_acknowledged(api: &Api, acks: &Acks) {
    let log = api.read_log().await.unwrap();
    for (at, stream, event_type) in acks {
        let event = log
            .iter()
            .find(|e| e["position"].as_u64() == Some(*at))
            .unwrap_or_else(|| panic!("acknowledged position {at} is not in the log"));
        assert_eq!(event["stream"], stream.as_str(), "{event}");
        assert_eq!(event["type"], event_type.as_str(), "{event}");
    }
}
