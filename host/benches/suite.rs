//! The benchmark suite: the real release `tessera` binary, the example plugins built
//! for release, and real HTTP/1.1 keep-alive connections from a Rust load generator
//! (hyper, one connection per simulated client, latencies in an HDR histogram).
//!
//! Run it with `make bench` (which builds the release plugins into `target/plugins`
//! first), or `cargo bench -p tessera --bench suite` once they are built. It prints a
//! table, each figure beside the target of issue 10, and writes every figure with the
//! machine it ran on to `target/bench/results.json`. It asserts nothing: a benchmark
//! prints figures.
//!
//! Each group of figures starts its own host process (`tessera serve --data <tmp>
//! --plugins <tmp> --listen 127.0.0.1:<port> --durability full`) on a fresh data folder
//! under `target/bench/` (the disk the figures are about, not a tmpfs), and kills it
//! afterwards, so the peak RSS (`VmHWM`) reported per group is that run's own.
//!
//! Settings (environment):
//! - `TESSERA_BENCH_SECONDS` (default 5): measured seconds per figure; each run is
//!   preceded by a warm-up of a fifth of that, not recorded.
//! - `TESSERA_BENCH_ONLY=name[,name...]`: run only these figures. A name selects the
//!   figure of that id and every id it is a `-`-separated prefix of: `commands`,
//!   `commands-new`, `commands-new-metrics-off` (new streams at 64 connections on a host
//!   run with `--no-metrics`, beside the metrics-on figure), `commands-zipf`,
//!   `commands-hot`, `four-plugins` (new streams, four plugins),
//!   `long-stream`, `queries`, `queries-account`, `queries-account-cached`,
//!   `queries-account-uncached`, `queries-accounts-cached`, `queries-accounts-uncached`,
//!   `lag`, `rebuild`, `native`, `languages` (`languages-rust`, `languages-ts`,
//!   `languages-py`: the bank's command handler in each language, see
//!   `suite/languages.rs`; `languages-ts-share`, when Rust and TypeScript both ran:
//!   TypeScript's rate as a share of Rust's in alternating rounds; `languages-mixed`:
//!   the TypeScript and Python banks in one host). Arguments after `--` (`cargo bench -p tessera --bench
//!   suite -- lag`) are read the same way.
//! - `TESSERA_BENCH_REBUILD_EVENTS` (default 1,000,000): the log the rebuilds run on.
//! - `TESSERA_BENCH_LONG_EVENTS` (default 10,000): the long stream's length.
//! - `TESSERA_BENCH_RESTARTS` (default 3): restarts for the cold long-stream samples.
//! - `TESSERA_BENCH_LAG_RATE` (default 5,000): commands per second offered in the lag
//!   figure.
//! - `TESSERA_BENCH_DURABILITY` (default `full`): the host's `--durability`.
//! - `TESSERA_BENCH_HOST_ARGS`: more arguments for every host, separated by spaces
//!   (e.g. `--instance-reuse 0` to measure queries on fresh instances).
//! - `TESSERA_BENCH_POSTGRES`: a PostgreSQL server's URL (`make postgres` prints one);
//!   with it, the `postgres` figures run (`postgres-one-host`, `postgres-three-hosts`:
//!   new streams at 16 and 64 connections, each on a fresh database of that server,
//!   the three hosts sharing one database and the connections split between them).
//!   Without it, or empty, they are skipped; `make bench` sets it to the `make
//!   postgres` server.
//! - `TESSERA_BENCH_PLUGINS`: a folder holding the four example `.wasm` files
//!   (default `target/plugins`, where `make plugins` puts the release builds; without
//!   them the suite falls back to the test builds and says so).
//!
//! The `native` figure is measured in this process rather than against the binary
//! (see `suite/native.rs`): the bank aggregate as its Wasm component and compiled
//! natively, through the same command bus and write store.
//!
//! The load generator shares the machine's cores with the host (2 on the project's
//! machines), so every rate is a floor: the host's CPU time per operation (from
//! `/proc/<pid>/stat`) and context switches per operation (summed over its threads)
//! are reported beside each closed-loop figure to tell what the host itself costs.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[path = "suite/call_cost.rs"]
mod call_cost;
#[path = "suite/languages.rs"]
mod languages;
#[path = "suite/native.rs"]
mod native;

/// Accounts the deposit and query figures run on.
const ACCOUNTS: usize = 10_000;
/// The hot accounts of the contended-deposit figure.
const HOT_ACCOUNTS: usize = 8;
/// The Zipf exponent of the deposit figure: account k (from 1) is picked with weight
/// 1/k^s.
const ZIPF_EXPONENT: f64 = 1.0;
/// Connection counts of the command figures.
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// Connections of the query figures.
const QUERY_CONNECTIONS: usize = 16;
/// Long streams measured (each `TESSERA_BENCH_LONG_EVENTS` events) in the cold and warm
/// long-stream figure; cold samples are one command per long stream per restart.
const LONG_STREAMS: usize = 4;
/// Connections of the open-loop load in the lag figure (enough to keep the offered
/// rate when latencies grow).
const LAG_CONNECTIONS: usize = 64;
/// One command in this many is followed by a lag probe.
const LAG_PROBE_EVERY: u64 = 20;
/// Connections that send lag probes.
const LAG_PROBERS: usize = 8;
/// Events per account in the rebuild log: one `AccountOpened`, then deposits.
const REBUILD_EVENTS_PER_ACCOUNT: u64 = 50;
/// The longest a host may take to answer `/health`.
const START_LIMIT: Duration = Duration::from_secs(120);
/// The longest a catch-up or rebuild may take.
const REBUILD_LIMIT: Duration = Duration::from_secs(3600);

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}

// ---------------------------------------------------------------------------------
// Settings, context and results
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
struct Settings {
    seconds: f64,
    only: Vec<String>,
    durability: String,
    rebuild_events: u64,
    long_events: u64,
    restarts: usize,
    lag_rate: f64,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn number<T: std::str::FromStr>(key: &str, default: T) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            match std::env::var(key) {
                Ok(text) if !text.trim().is_empty() => text
                    .trim()
                    .replace('_', "")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{key}={text}: {e}")),
                _ => Ok(default),
            }
        }
        let mut only: Vec<String> = std::env::var("TESSERA_BENCH_ONLY")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        // `cargo bench` passes `--bench`; other words are figure names.
        only.extend(std::env::args().skip(1).filter(|arg| !arg.starts_with('-')));
        let settings = Settings {
            seconds: number("TESSERA_BENCH_SECONDS", 5.0)?,
            only,
            durability: std::env::var("TESSERA_BENCH_DURABILITY")
                .unwrap_or_else(|_| "full".to_string()),
            rebuild_events: number("TESSERA_BENCH_REBUILD_EVENTS", 1_000_000)?,
            long_events: number("TESSERA_BENCH_LONG_EVENTS", 10_000)?,
            restarts: number("TESSERA_BENCH_RESTARTS", 3)?,
            lag_rate: number("TESSERA_BENCH_LAG_RATE", 5_000.0)?,
        };
        ensure!(
            settings.seconds > 0.0,
            "TESSERA_BENCH_SECONDS must be positive"
        );
        ensure!(
            settings.long_events >= 2,
            "TESSERA_BENCH_LONG_EVENTS must be 2 or more"
        );
        ensure!(
            settings.restarts >= 1,
            "TESSERA_BENCH_RESTARTS must be 1 or more"
        );
        ensure!(
            settings.lag_rate > 0.0,
            "TESSERA_BENCH_LAG_RATE must be positive"
        );
        Ok(settings)
    }

    /// Whether the figure `id` is to run.
    fn runs(&self, id: &str) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|name| id == name || id.starts_with(&format!("{name}-")))
    }

    fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64((self.seconds / 5.0).max(0.2))
    }
}

/// The four example plugins.
#[derive(Debug, Clone)]
struct PluginFiles {
    bank_account: PathBuf,
    account_balance: PathBuf,
    bank_totals: PathBuf,
    bank_queries: PathBuf,
    /// Where they came from: `release` (target/plugins), or the test builds.
    profile: String,
}

impl PluginFiles {
    fn find(target_dir: &Path) -> Result<PluginFiles> {
        let names = [
            "bank-account",
            "account-balance",
            "bank-totals",
            "bank-queries",
        ];
        let (dir, profile) = match std::env::var("TESSERA_BENCH_PLUGINS") {
            Ok(dir) => (
                PathBuf::from(dir),
                "given (TESSERA_BENCH_PLUGINS)".to_string(),
            ),
            Err(_) => (
                target_dir.join("plugins"),
                "release (make plugins)".to_string(),
            ),
        };
        if names
            .iter()
            .all(|n| dir.join(format!("{n}.wasm")).is_file())
        {
            let file = |n: &str| dir.join(format!("{n}.wasm"));
            return Ok(PluginFiles {
                bank_account: file("bank-account"),
                account_balance: file("account-balance"),
                bank_totals: file("bank-totals"),
                bank_queries: file("bank-queries"),
                profile,
            });
        }
        eprintln!(
            "warning: no release plugins in {} (run `make plugins`, or `make bench`); \
             using the test builds (profile dev-plugin, no LTO)",
            dir.display()
        );
        use tessera_test_support::plugins;
        Ok(PluginFiles {
            bank_account: plugins::BANK_ACCOUNT.into(),
            account_balance: plugins::ACCOUNT_BALANCE.into(),
            bank_totals: plugins::BANK_TOTALS.into(),
            bank_queries: plugins::BANK_QUERIES.into(),
            profile: "dev-plugin (test builds)".to_string(),
        })
    }

    fn bank_only(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("bank-account", self.bank_account.clone())]
    }

    fn all_four(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("bank-account", self.bank_account.clone()),
            ("account-balance", self.account_balance.clone()),
            ("bank-totals", self.bank_totals.clone()),
            ("bank-queries", self.bank_queries.clone()),
        ]
    }

    fn projections(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("account-balance", self.account_balance.clone()),
            ("bank-totals", self.bank_totals.clone()),
        ]
    }
}

/// One row of the table and of `results.json`.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// The figure's id (what `TESSERA_BENCH_ONLY` names).
    id: String,
    /// The host run it was measured in (one host process per group).
    group: String,
    label: String,
    connections: Option<usize>,
    /// The figure in `unit`.
    value: Option<f64>,
    unit: String,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    /// Host CPU time (user + system) per operation, in microseconds.
    host_cpu_us_per_op: Option<f64>,
    /// Host context switches (voluntary + involuntary, all threads) per operation.
    host_switches_per_op: Option<f64>,
    target: Option<String>,
    met: Option<bool>,
    note: Option<String>,
    details: Value,
}

impl Row {
    fn new(id: &str, group: &str, label: impl Into<String>, unit: &str) -> Row {
        Row {
            id: id.to_string(),
            group: group.to_string(),
            label: label.into(),
            connections: None,
            value: None,
            unit: unit.to_string(),
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            host_cpu_us_per_op: None,
            host_switches_per_op: None,
            target: None,
            met: None,
            note: None,
            details: Value::Null,
        }
    }

    /// A row from a closed-loop (or open-loop) run.
    fn from_sample(id: &str, group: &str, label: &str, unit: &str, sample: &Sample) -> Row {
        let mut row = Row::new(id, group, label, unit);
        row.connections = Some(sample.connections);
        row.value = Some(sample.per_second);
        row.p50_ms = Some(sample.quantile_ms(0.50));
        row.p99_ms = Some(sample.quantile_ms(0.99));
        row.p999_ms = Some(sample.quantile_ms(0.999));
        row.host_cpu_us_per_op = sample.host_cpu_us_per_op;
        row.host_switches_per_op = sample.host_switches_per_op;
        let failed: u64 = sample
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum();
        if failed > 0 {
            row.note = Some(format!(
                "{failed} of {} answers not 2xx: {:?}",
                sample.ops, sample.statuses
            ));
        }
        row.details = sample.details();
        row
    }

    fn target(mut self, text: &str, met: bool) -> Row {
        self.target = Some(text.to_string());
        self.met = Some(met);
        self
    }

    fn note(mut self, text: impl Into<String>) -> Row {
        let text = text.into();
        self.note = Some(match self.note.take() {
            Some(before) => format!("{before}; {text}"),
            None => text,
        });
        self
    }

    fn result_text(&self) -> String {
        let Some(value) = self.value else {
            return "not measured".to_string();
        };
        match self.unit.as_str() {
            "x" => format!("{value:.2}x"),
            "MB" => format!("{value:.0} MB"),
            "µs" => format!("{value:.1} µs"),
            unit if unit.starts_with("ms") => format!("{value:.2} {unit}"),
            unit => format!("{} {unit}", thousands(value)),
        }
    }
}

/// What the suite found, written to `results.json`.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// The `TESSERA_BENCH_*` settings in the environment and the arguments: what
    /// reproduces this run (`make bench` or `cargo bench -p tessera --bench suite`).
    invocation: String,
    settings: Settings,
    started: String,
    took_seconds: f64,
    figures: Vec<Row>,
    hosts: Vec<HostRecord>,
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    cores: usize,
    cpu_model: Option<String>,
    kernel: Option<String>,
    memory_mb: Option<u64>,
    /// 4 KiB appended and `sync_all` per sample, in the folder the hosts keep data in.
    fsync_p50_ms: f64,
    fsync_p99_ms: f64,
    fsync_samples: u64,
    bench_dir: String,
    filesystem: Option<String>,
    durability: String,
    git_commit: Option<String>,
    /// Uncommitted changes in the work tree when the suite ran.
    git_dirty: Option<bool>,
    date: String,
    /// `/proc/loadavg` before and after: the machine is shared.
    load_average_start: Option<String>,
    load_average_end: Option<String>,
    binary: String,
    plugins: String,
    load_generator: String,
}

/// A host process the suite ran.
#[derive(Debug, Clone, Serialize)]
struct HostRecord {
    group: String,
    role: String,
    peak_rss_mb: Option<f64>,
    seconds: f64,
}

struct Ctx {
    settings: Settings,
    bin: PathBuf,
    plugins: PluginFiles,
    /// This run's scratch folder (deleted at the end).
    dir: PathBuf,
    rows: Vec<Row>,
    hosts: Vec<HostRecord>,
    next_id: usize,
}

impl Ctx {
    /// A fresh data folder and a plugins folder holding `plugins`, for one group.
    fn layout(&self, group: &str, plugins: &[(&str, PathBuf)]) -> Result<(PathBuf, PathBuf)> {
        let root = self.dir.join(group);
        let data = root.join("data");
        let plugins_dir = root.join("plugins");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&plugins_dir)?;
        for (name, file) in plugins {
            std::fs::copy(file, plugins_dir.join(format!("{name}.wasm")))
                .with_context(|| format!("copying {}", file.display()))?;
        }
        Ok((data, plugins_dir))
    }

    async fn start(
        &mut self,
        group: &str,
        role: &str,
        data: &Path,
        plugins: &Path,
        durability: &str,
        extra: &[String],
    ) -> Result<Host> {
        self.next_id += 1;
        let log = self
            .dir
            .join(format!("host-{}-{group}-{role}.log", self.next_id));
        Host::start(
            &self.bin, group, role, data, plugins, durability, extra, &log,
        )
        .await
    }

    async fn stop(&mut self, host: Host) -> HostRecord {
        let record = host.stop().await;
        self.hosts.push(record.clone());
        record
    }

    fn push(&mut self, row: Row) {
        print_row(&row);
        self.rows.push(row);
    }

    /// The peak RSS row of a group.
    fn rss_row(&mut self, group: &str, label: &str, record: &HostRecord) {
        let mut row = Row::new(&format!("{group}-rss"), group, label, "MB");
        row.value = record.peak_rss_mb;
        let row = match record.peak_rss_mb {
            Some(mb) => row.target("< 256 MB", mb < 256.0),
            None => row.note("VmHWM not readable"),
        };
        self.push(row);
    }
}

// ---------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------

async fn run(settings: Settings) -> Result<()> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tessera"));
    // `target/release/tessera` -> `target`.
    let target_dir = bin
        .parent()
        .and_then(Path::parent)
        .context("the binary's target folder")?
        .to_path_buf();
    let bench_dir = match std::env::var("TESSERA_BENCH_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => target_dir.join("bench"),
    };
    std::fs::create_dir_all(&bench_dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&bench_dir)?;
    let plugins = PluginFiles::find(&target_dir)?;
    let machine_start = machine(&settings, &bin, &plugins, scratch.path())?;
    println!(
        "tessera benchmark suite: {} cores ({}), fsync p50 {:.3} ms / p99 {:.3} ms on {} ({}), \
         durability {}, commit {}{}, load average {}",
        machine_start.cores,
        machine_start.cpu_model.as_deref().unwrap_or("?"),
        machine_start.fsync_p50_ms,
        machine_start.fsync_p99_ms,
        machine_start.bench_dir,
        machine_start.filesystem.as_deref().unwrap_or("?"),
        machine_start.durability,
        machine_start
            .git_commit
            .as_deref()
            .map_or("?", |c| &c[..c.len().min(12)]),
        if machine_start.git_dirty == Some(true) {
            " (dirty)"
        } else {
            ""
        },
        machine_start.load_average_start.as_deref().unwrap_or("?"),
    );
    println!(
        "binary {}, plugins {}; {} s per figure after {:.1} s of warm-up{}",
        bin.display(),
        plugins.profile,
        settings.seconds,
        settings.warmup().as_secs_f64(),
        if settings.only.is_empty() {
            String::new()
        } else {
            format!(", only {}", settings.only.join(","))
        }
    );
    println!();
    print_header();

    let mut ctx = Ctx {
        settings,
        bin,
        plugins,
        dir: scratch.path().to_path_buf(),
        rows: Vec::new(),
        hosts: Vec::new(),
        next_id: 0,
    };
    type Group = fn(&mut Ctx) -> futures::future::LocalBoxFuture<'_, Result<()>>;
    let groups: [(&str, &[&str], Group); 8] = [
        (
            "bank-commands",
            &[
                "commands-new",
                "commands-new-metrics-off",
                "commands-zipf",
                "commands-hot",
            ],
            |ctx| Box::pin(bank_commands(ctx)),
        ),
        ("four-plugins", &["four-plugins"], |ctx| {
            Box::pin(four_plugins(ctx))
        }),
        ("long-stream", &["long-stream"], |ctx| {
            Box::pin(long_stream(ctx))
        }),
        (
            "read-side",
            &[
                "queries-account-cached",
                "queries-account-uncached",
                "queries-accounts-cached",
                "queries-accounts-uncached",
                "lag",
            ],
            |ctx| Box::pin(read_side(ctx)),
        ),
        (
            "rebuild",
            &["rebuild-account-balance", "rebuild-bank-totals"],
            |ctx| Box::pin(rebuild(ctx)),
        ),
        ("native", &["native"], |ctx| Box::pin(native(ctx))),
        (
            "postgres",
            &["postgres-one-host", "postgres-three-hosts"],
            |ctx| Box::pin(postgres(ctx)),
        ),
        (
            "languages",
            &[
                "languages-rust",
                "languages-ts",
                "languages-py",
                "languages-mixed",
            ],
            |ctx| Box::pin(languages::languages(ctx)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, figures, group) in groups {
        if !figures.iter().any(|id| ctx.settings.runs(id)) {
            continue;
        }
        let took = Instant::now();
        if let Err(error) = group(&mut ctx).await {
            eprintln!("group {name} failed: {error:#}");
            let row =
                Row::new(name, name, format!("{name}: FAILED"), "").note(format!("{error:#}"));
            ctx.push(row);
            failures.push(name);
        }
        eprintln!("  ({name}: {:.0} s)", took.elapsed().as_secs_f64());
    }

    let mut machine = machine_start;
    machine.load_average_end = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.trim().to_string());
    println!();
    println!(
        "all figures ({:.0} s; load average at the end {}):",
        started.elapsed().as_secs_f64(),
        machine.load_average_end.as_deref().unwrap_or("?")
    );
    print_header();
    for row in &ctx.rows {
        print_row(row);
    }
    let mut invocation: Vec<String> = std::env::vars()
        .filter(|(key, _)| key.starts_with("TESSERA_BENCH_"))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    invocation.sort();
    invocation.push("cargo bench -p tessera --bench suite".to_string());
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if !words.is_empty() {
        invocation.push(format!("-- {}", words.join(" ")));
    }
    let report = Report {
        machine,
        invocation: invocation.join(" "),
        settings: ctx.settings.clone(),
        started: started_at,
        took_seconds: started.elapsed().as_secs_f64(),
        figures: ctx.rows,
        hosts: ctx.hosts,
    };
    let out = bench_dir.join("results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nwritten to {}", out.display());
    if !failures.is_empty() {
        // The hosts' logs and data stay for a look.
        let kept = scratch.keep();
        bail!(
            "groups failed: {} (host logs and data kept in {})",
            failures.join(", "),
            kept.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The groups of figures
// ---------------------------------------------------------------------------------

/// `open-account` on new streams with the log in PostgreSQL (`TESSERA_BENCH_POSTGRES`),
/// at 16 and 64 connections: one host, then three hosts on one database with the
/// connections split between them (the figure is their sum).
async fn postgres(ctx: &mut Ctx) -> Result<()> {
    let group = "postgres";
    let Some(server) = std::env::var("TESSERA_BENCH_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        ctx.push(
            Row::new(group, group, "postgres: skipped", "")
                .note("set TESSERA_BENCH_POSTGRES to a server's URL (`make postgres` prints one)"),
        );
        return Ok(());
    };
    let durability = ctx.settings.durability.clone();
    if ctx.settings.runs("postgres-one-host") {
        for conns in [16, 64] {
            let store = fresh_database(&server).await?;
            let role = format!("one-host-{conns}");
            let (data, plugins) =
                ctx.layout(&format!("{group}-{role}"), &ctx.plugins.bank_only())?;
            let extra = ["--store".to_string(), store];
            let host = ctx
                .start(group, &role, &data, &plugins, &durability, &extra)
                .await?;
            let sample = closed_loop(&host, conns, &ctx.settings, new_streams("p")).await?;
            ctx.stop(host).await;
            let label = "open-account, new streams, PostgreSQL, one host";
            ctx.push(command_row("postgres-one-host", group, label, &sample));
        }
    }
    if ctx.settings.runs("postgres-three-hosts") {
        for conns in [16, 64] {
            let store = fresh_database(&server).await?;
            let extra = ["--store".to_string(), store];
            let mut hosts = Vec::new();
            for name in ["a", "b", "c"] {
                let role = format!("three-hosts-{conns}-{name}");
                let (data, plugins) =
                    ctx.layout(&format!("{group}-{role}"), &ctx.plugins.bank_only())?;
                hosts.push(
                    ctx.start(group, &role, &data, &plugins, &durability, &extra)
                        .await?,
                );
            }
            let settings = ctx.settings.clone();
            let samples =
                futures::future::try_join_all(hosts.iter().enumerate().map(|(i, host)| {
                    // 16 -> 6 + 5 + 5, 64 -> 22 + 21 + 21.
                    let share = conns / 3 + usize::from(i < conns % 3);
                    closed_loop(host, share, &settings, new_streams("p3"))
                }))
                .await?;
            for host in hosts {
                ctx.stop(host).await;
            }
            let mut merged = samples.into_iter();
            let mut total = merged.next().context("three samples")?;
            for sample in merged {
                total.connections += sample.connections;
                total.ops += sample.ops;
                total.per_second += sample.per_second;
                total.hist.add(&sample.hist)?;
                for (status, n) in sample.statuses {
                    *total.statuses.entry(status).or_default() += n;
                }
            }
            // Each host's CPU is its own; the sum over three hosts is not reported.
            total.host_cpu_us_per_op = None;
            total.host_switches_per_op = None;
            let label = "open-account, new streams, PostgreSQL, three hosts (sum)";
            ctx.push(command_row("postgres-three-hosts", group, label, &total));
        }
    }
    Ok(())
}

/// Creates an empty database on the PostgreSQL server at `server`; its URL.
async fn fresh_database(server: &str) -> Result<String> {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {server}: run `make postgres`"))?;
    let driving = tokio::spawn(connection);
    let name = format!("tessera_bench_{}_{}", std::process::id(), fastrand::u64(..));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    drop(client);
    let _ = driving.await;
    // The server's URL with its database replaced.
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let start = base.find("://").map_or(0, |scheme| scheme + 3);
    let end = base[start..]
        .find('/')
        .map_or(base.len(), |slash| start + slash);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{}/{name}{query}", &base[..end]))
}

/// `open-account` on new streams, deposits on Zipf-chosen accounts and on hot
/// accounts, bank-account only, at 1, 16 and 64 connections.
async fn bank_commands(ctx: &mut Ctx) -> Result<()> {
    let group = "bank-commands";
    let (data, plugins) = ctx.layout(group, &ctx.plugins.bank_only())?;
    let durability = ctx.settings.durability.clone();
    let host = ctx
        .start(group, "measure", &data, &plugins, &durability, &[])
        .await?;
    let mut metrics_on = None;
    if ctx.settings.runs("commands-new") {
        for conns in CONNECTIONS {
            let sample = closed_loop(&host, conns, &ctx.settings, new_streams("n")).await?;
            let row = command_row("commands-new", group, "open-account, new streams", &sample);
            let row = if conns == 64 {
                metrics_on = Some(sample.per_second);
                row.target("≥ 20,000/s", sample.per_second >= 20_000.0)
            } else {
                row
            };
            ctx.push(row);
        }
    }
    if ctx.settings.runs("commands-new-metrics-off") {
        metrics_off(ctx, &durability, metrics_on).await?;
    }
    if ctx.settings.runs("commands-zipf") || ctx.settings.runs("commands-hot") {
        eprintln!("  opening {ACCOUNTS} accounts");
        open_accounts(&host, "acct", ACCOUNTS).await?;
    }
    if ctx.settings.runs("commands-zipf") {
        let zipf = Arc::new(Zipf::new(ACCOUNTS, ZIPF_EXPONENT));
        for conns in CONNECTIONS {
            let zipf = zipf.clone();
            let generate: Generate =
                Arc::new(move |lane| deposit(&format!("acct-{}", zipf.sample(&mut lane.rng)), 1));
            let sample = closed_loop(&host, conns, &ctx.settings, generate).await?;
            let label = format!("deposit, {ACCOUNTS} accounts, Zipf s={ZIPF_EXPONENT}");
            ctx.push(command_row("commands-zipf", group, &label, &sample));
        }
    }
    if ctx.settings.runs("commands-hot") {
        for conns in CONNECTIONS {
            let generate: Generate =
                Arc::new(|lane| deposit(&format!("acct-{}", lane.rng.usize(..HOT_ACCOUNTS)), 1));
            let sample = closed_loop(&host, conns, &ctx.settings, generate).await?;
            let label = format!("deposit, {HOT_ACCOUNTS} hot accounts");
            ctx.push(command_row("commands-hot", group, &label, &sample));
        }
    }
    let record = ctx.stop(host).await;
    ctx.rss_row(group, "peak RSS, bank-account commands run", &record);
    Ok(())
}

/// What metrics cost the command path: `open-account` on new streams at 64
/// connections, on a fresh host started with `--no-metrics` (the one above, metrics on,
/// waits idle meanwhile), with the difference to the metrics-on figure if it ran.
async fn metrics_off(ctx: &mut Ctx, durability: &str, metrics_on: Option<f64>) -> Result<()> {
    let group = "bank-commands";
    let (data, plugins) = ctx.layout("bank-commands-metrics-off", &ctx.plugins.bank_only())?;
    let off = ["--no-metrics".to_string()];
    let host = ctx
        .start(group, "metrics-off", &data, &plugins, durability, &off)
        .await?;
    let sample = closed_loop(&host, 64, &ctx.settings, new_streams("n")).await;
    ctx.stop(host).await;
    let sample = sample?;
    let label = "open-account, new streams, --no-metrics";
    let row = command_row("commands-new-metrics-off", group, label, &sample);
    let row = match metrics_on {
        Some(on) => row.note(format!(
            "metrics on: {on:.0}/s, {:+.1}% of this",
            (on / sample.per_second - 1.0) * 100.0
        )),
        None => row,
    };
    ctx.push(row);
    Ok(())
}

/// `open-account` on new streams with the four example plugins: every response waits
/// for the inline `account-balance`.
async fn four_plugins(ctx: &mut Ctx) -> Result<()> {
    let group = "four-plugins";
    let (data, plugins) = ctx.layout(group, &ctx.plugins.all_four())?;
    let durability = ctx.settings.durability.clone();
    let host = ctx
        .start(group, "measure", &data, &plugins, &durability, &[])
        .await?;
    wait_projections(&host, &["account-balance", "bank-totals"], 0).await?;
    for conns in CONNECTIONS {
        let sample = closed_loop(&host, conns, &ctx.settings, new_streams("n")).await?;
        let row = command_row(
            "four-plugins",
            group,
            "open-account, new streams, 4 plugins",
            &sample,
        );
        let row = if conns == 64 {
            row.target("≥ 12,000/s", sample.per_second >= 12_000.0)
        } else {
            row
        };
        ctx.push(row);
    }
    let record = ctx.stop(host).await;
    ctx.rss_row(group, "peak RSS, four-plugin commands run", &record);
    Ok(())
}

/// A deposit on a stream of `long_events` events against one on a stream that holds
/// only its `AccountOpened` (the same command, so only the stream's length differs),
/// warm (the host has served both streams already) and cold (the first command on
/// each after a restart of the binary on the same data folder).
async fn long_stream(ctx: &mut Ctx) -> Result<()> {
    let group = "long-stream";
    let long_events = ctx.settings.long_events;
    let restarts = ctx.settings.restarts;
    let (data, plugins) = ctx.layout(group, &ctx.plugins.bank_only())?;

    // Set-up at `--durability normal` (the same files, no fsync per commit): the long
    // streams' commands are sequential per stream.
    let setup = ctx
        .start(group, "setup", &data, &plugins, "normal", &[])
        .await?;
    eprintln!("  writing {LONG_STREAMS} streams of {long_events} events");
    let cold_shorts = restarts * LONG_STREAMS;
    let warm_shorts = 64;
    let mut opens: Vec<Req> = (0..LONG_STREAMS)
        .map(|k| open_account(&format!("long-{k}")))
        .collect();
    opens.extend((0..cold_shorts + warm_shorts).map(|k| open_account(&format!("short-{k}"))));
    fire_spread(&setup, 16, opens).await?;
    let lanes: Vec<Vec<Req>> = (0..LONG_STREAMS)
        .map(|k| {
            (1..long_events)
                .map(|_| deposit(&format!("long-{k}"), 1))
                .collect()
        })
        .collect();
    fire(&setup, lanes).await?;
    ctx.stop(setup).await;

    let durability = ctx.settings.durability.clone();
    let mut cold_long = Vec::new();
    let mut cold_short = Vec::new();
    let mut warm = None;
    let mut peak: Option<f64> = None;
    let mut last_record = None;
    for restart in 0..restarts {
        let role = format!("measure-{restart}");
        let host = ctx
            .start(group, &role, &data, &plugins, &durability, &[])
            .await?;
        let mut conn = Conn::open(host.addr).await?;
        // The first command after a start also pays for what any first command does
        // (code, statements, pages); it goes to a stream of its own.
        expect_ok(conn.send(&open_account(&format!("warm-{restart}"))).await?)?;
        for k in 0..LONG_STREAMS {
            let short = format!("short-{}", restart * LONG_STREAMS + k);
            let sent = Instant::now();
            expect_ok(conn.send(&deposit(&short, 1)).await?)?;
            cold_short.push(sent.elapsed());
            let sent = Instant::now();
            expect_ok(conn.send(&deposit(&format!("long-{k}"), 1)).await?)?;
            cold_long.push(sent.elapsed());
        }
        if restart == 0 {
            warm = Some(
                alternate(
                    &mut conn,
                    &ctx.settings,
                    |i| deposit(&format!("long-{}", i % LONG_STREAMS as u64), 1),
                    |i| {
                        deposit(
                            &format!("short-{}", cold_shorts as u64 + i % warm_shorts as u64),
                            1,
                        )
                    },
                )
                .await?,
            );
        }
        let record = ctx.stop(host).await;
        peak = match (peak, record.peak_rss_mb) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        last_record = Some(record);
    }

    let (long_hist, short_hist) = warm.context("the warm run")?;
    let long_p50 = ms(long_hist.value_at_quantile(0.5));
    let short_p50 = ms(short_hist.value_at_quantile(0.5));
    let ratio = long_p50 / short_p50;
    let mut row = Row::new(
        "long-stream",
        group,
        format!("{long_events}-event stream vs new, warm (p50)"),
        "x",
    );
    row.connections = Some(1);
    row.value = Some(ratio);
    row.p50_ms = Some(long_p50);
    row.p99_ms = Some(ms(long_hist.value_at_quantile(0.99)));
    row.p999_ms = Some(ms(long_hist.value_at_quantile(0.999)));
    row.details = json!({
        "long": histogram_json(&long_hist),
        "new": histogram_json(&short_hist),
        "long_streams": LONG_STREAMS,
        "long_events": long_events,
        "new_stream": "a stream holding only its AccountOpened",
    });
    let row = row
        .target("≤ 1.2x", ratio <= 1.2)
        .note(format!("new stream p50 {short_p50:.3} ms"));
    ctx.push(row);

    let median = |samples: &mut Vec<Duration>| -> f64 {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    };
    let long_ms = median(&mut cold_long);
    let short_ms = median(&mut cold_short);
    let ratio = long_ms / short_ms;
    let mut row = Row::new(
        "long-stream",
        group,
        format!("{long_events}-event stream vs new, cold (median)"),
        "x",
    );
    row.connections = Some(1);
    row.value = Some(ratio);
    row.p50_ms = Some(long_ms);
    row.details = json!({
        "long_ms": cold_long.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        "new_ms": cold_short.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        "restarts": restarts,
    });
    let row = row.target("≤ 1.2x", ratio <= 1.2).note(format!(
        "first command per stream after a restart, {} samples each; new stream median {short_ms:.3} ms",
        cold_long.len()
    ));
    ctx.push(row);
    let mut record = last_record.context("a measured host")?;
    record.peak_rss_mb = peak;
    ctx.rss_row(group, "peak RSS, long-stream runs", &record);
    Ok(())
}

/// Queries, cached and uncached, and the write-to-read lag of the async `bank-totals`,
/// with the four example plugins on [`ACCOUNTS`] accounts.
async fn read_side(ctx: &mut Ctx) -> Result<()> {
    let group = "read-side";
    let (data, plugins) = ctx.layout(group, &ctx.plugins.all_four())?;
    let durability = ctx.settings.durability.clone();
    let host = ctx
        .start(group, "measure", &data, &plugins, &durability, &[])
        .await?;
    eprintln!("  opening {ACCOUNTS} accounts");
    let head = open_accounts(&host, "acct", ACCOUNTS).await?;
    wait_projections(&host, &["account-balance", "bank-totals"], head).await?;

    let nonce = Arc::new(AtomicU64::new(0));
    // (id, label, requests, target: text, queries/s at least, p99 ms below)
    type QueryFigure = (
        &'static str,
        &'static str,
        Generate,
        Option<(&'static str, f64, Option<f64>)>,
    );
    let queries: [QueryFigure; 4] = [
        (
            "queries-account-cached",
            "GET account?id=, same id",
            Arc::new(|_| get("/queries/account?id=acct-42")),
            Some(("≥ 100,000/s, p99 < 1 ms", 100_000.0, Some(1.0))),
        ),
        (
            "queries-account-uncached",
            "GET account?id=, distinct",
            {
                let nonce = nonce.clone();
                Arc::new(move |lane| {
                    // A parameter the handler ignores makes every request a new cache
                    // key; the account varies too.
                    get(&format!(
                        "/queries/account?id=acct-{}&bench={}",
                        lane.rng.usize(..ACCOUNTS),
                        nonce.fetch_add(1, Ordering::Relaxed)
                    ))
                })
            },
            Some(("≥ 20,000/s", 20_000.0, None)),
        ),
        (
            "queries-accounts-cached",
            "GET accounts?limit=50, same",
            Arc::new(|_| get("/queries/accounts?limit=50")),
            None,
        ),
        (
            "queries-accounts-uncached",
            "GET accounts?limit=50, distinct",
            {
                let nonce = nonce.clone();
                Arc::new(move |_| {
                    get(&format!(
                        "/queries/accounts?limit=50&bench={}",
                        nonce.fetch_add(1, Ordering::Relaxed)
                    ))
                })
            },
            None,
        ),
    ];
    for (id, label, generate, target) in queries {
        if !ctx.settings.runs(id) {
            continue;
        }
        let sample = closed_loop(&host, QUERY_CONNECTIONS, &ctx.settings, generate).await?;
        let mut row = Row::from_sample(id, group, label, "queries/s", &sample);
        if let Some((text, rate, p99)) = target {
            let met = sample.per_second >= rate
                && p99.is_none_or(|bound| sample.quantile_ms(0.99) < bound);
            row = row.target(text, met);
        }
        let answered = sample.hits + sample.misses;
        if answered > 0 {
            row = row.note(format!(
                "cache hits {:.1}%",
                100.0 * sample.hits as f64 / answered as f64
            ));
        }
        ctx.push(row);
    }

    if ctx.settings.runs("lag") {
        let lag = lag_run(&host, &ctx.settings).await?;
        ctx.push(lag);
    }
    let record = ctx.stop(host).await;
    ctx.rss_row(group, "peak RSS, queries and lag run", &record);
    Ok(())
}

/// Rebuilds through `POST /projections/{name}/rebuild` on a log of
/// `rebuild_events` events, one projection at a time, timed until the new
/// generation is active at the head.
async fn rebuild(ctx: &mut Ctx) -> Result<()> {
    let group = "rebuild";
    let (data, plugins) = ctx.layout(group, &ctx.plugins.projections())?;
    let accounts = ctx
        .settings
        .rebuild_events
        .div_ceil(REBUILD_EVENTS_PER_ACCOUNT);
    eprintln!(
        "  appending {} events ({accounts} accounts x {REBUILD_EVENTS_PER_ACCOUNT})",
        accounts * REBUILD_EVENTS_PER_ACCOUNT
    );
    let took = Instant::now();
    let head = build_log(&data, accounts).await?;
    eprintln!(
        "  log of {head} events written in {:.1} s",
        took.elapsed().as_secs_f64()
    );
    let durability = ctx.settings.durability.clone();
    let started = Instant::now();
    let host = ctx
        .start(group, "measure", &data, &plugins, &durability, &[])
        .await?;
    let names = ["account-balance", "bank-totals"];
    wait_projections_for(&host, &names, head, REBUILD_LIMIT).await?;
    let catch_up = started.elapsed();
    let mut row = Row::new(
        "rebuild-catch-up",
        group,
        "catch-up from 0 at start, both at once",
        "events/s",
    );
    row.value = Some(head as f64 / catch_up.as_secs_f64());
    row.details = json!({ "events": head, "seconds": catch_up.as_secs_f64() });
    ctx.push(row.note(format!(
        "{head} events, {:.1} s from process start until both live",
        catch_up.as_secs_f64()
    )));

    let client = reqwest::Client::new();
    let url = format!("http://{}", host.addr);
    for name in names {
        let id = format!("rebuild-{name}");
        if !ctx.settings.runs(&id) {
            continue;
        }
        let started = Instant::now();
        let response = client
            .post(format!("{url}/projections/{name}/rebuild"))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(
            status.as_u16() == 202,
            "rebuild of {name} refused: {status} {body}"
        );
        let generation = body["building"]["generation"]
            .as_u64()
            .with_context(|| format!("no generation in {body}"))?;
        let mut peak_rate: f64 = 0.0;
        loop {
            ensure!(
                started.elapsed() < REBUILD_LIMIT,
                "the rebuild of {name} took too long"
            );
            let list = projections(&client, &url).await?;
            let new = list
                .iter()
                .find(|p| p["name"] == name && p["generation"].as_u64() == Some(generation));
            if let Some(new) = new {
                peak_rate =
                    peak_rate.max(new["progress"]["events_per_second"].as_f64().unwrap_or(0.0));
                if new["role"] == "active" && new["checkpoint"].as_u64() >= Some(head) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = started.elapsed();
        let rate = head as f64 / took.as_secs_f64();
        let mut row = Row::new(&id, group, format!("rebuild {name}"), "events/s");
        row.value = Some(rate);
        row.details = json!({
            "events": head,
            "seconds": took.as_secs_f64(),
            "host_reported_peak_events_per_second": peak_rate,
        });
        ctx.push(
            row.target("≥ 300,000 events/s", rate >= 300_000.0)
                .note(format!(
                    "{head} events in {:.2} s, until the new generation took over",
                    took.as_secs_f64()
                )),
        );
    }
    let record = ctx.stop(host).await;
    ctx.rss_row(group, "peak RSS, rebuild run", &record);
    Ok(())
}

/// The cost of the sandbox: the bank aggregate as Wasm against the same aggregate
/// compiled natively, through the same command bus, in one run (in this process; see
/// `suite/native.rs`). Time per command at 1 and 64 concurrent commands, and the CPU
/// per command, which the disk's pace does not hide.
async fn native(ctx: &mut Ctx) -> Result<()> {
    let group = "native";
    let durability = match ctx.settings.durability.as_str() {
        "normal" => tessera::event_store::Durability::Normal,
        _ => tessera::event_store::Durability::Full,
    };
    let wasm = ctx
        .plugins
        .bank_only()
        .into_iter()
        .next()
        .map(|(_, file)| file)
        .context("the bank-account plugin")?;
    let scratch = ctx.dir.join(group);
    for connections in [1, 64] {
        let comparison = native::compare(
            &wasm,
            &scratch,
            durability,
            connections,
            ctx.settings.warmup(),
            ctx.settings.measure(),
        )
        .await?;
        for measured in [&comparison.wasm, &comparison.native] {
            let mut row = Row::new(
                &format!("native-{}-{connections}", measured.mode),
                group,
                format!("open-account in process, {}", measured.mode),
                "commands/s",
            );
            row.connections = Some(connections);
            row.value = Some(measured.per_second);
            row.p50_ms = Some(ms(measured.hist.value_at_quantile(0.5)));
            row.p99_ms = Some(ms(measured.hist.value_at_quantile(0.99)));
            row.p999_ms = Some(ms(measured.hist.value_at_quantile(0.999)));
            row.host_cpu_us_per_op = measured.cpu_us_per_command;
            row.details = json!({ "commands": measured.commands });
            ctx.push(row);
        }
        let ratio = comparison.ratio();
        let mut row = Row::new(
            &format!("native-{connections}"),
            group,
            "Wasm vs native bank aggregate, same bus",
            "x",
        );
        row.connections = Some(connections);
        row.value = Some(ratio);
        let note = match comparison.cpu_ratio() {
            Some(cpu) => format!(
                "Wasm time per command / native, new streams; CPU per command {cpu:.2}x \
                 ({:.0} vs {:.0} µs)",
                comparison.wasm.cpu_us_per_command.unwrap_or(0.0),
                comparison.native.cpu_us_per_command.unwrap_or(0.0)
            ),
            None => "Wasm time per command / native, new streams".to_string(),
        };
        ctx.push(
            row.target("≤ 1.2x time per command", ratio <= 1.2)
                .note(note),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------

fn command_row(id: &str, group: &str, label: &str, sample: &Sample) -> Row {
    let row = Row::from_sample(id, group, label, "commands/s", sample);
    if sample.connections == 16 {
        let p99 = sample.quantile_ms(0.99);
        row.target("p99 < 2 ms", p99 < 2.0)
    } else {
        row
    }
}

fn open_account(id: &str) -> Req {
    post(
        "/commands/open-account",
        format!(r#"{{"aggregate_id":"{id}","payload":{{"owner":"bench"}}}}"#),
    )
}

fn deposit(id: &str, amount: u64) -> Req {
    post(
        "/commands/deposit",
        format!(r#"{{"aggregate_id":"{id}","payload":{{"amount":{amount}}}}}"#),
    )
}

/// `open-account` on a stream no request used before.
fn new_streams(prefix: &'static str) -> Generate {
    let run = fastrand::u64(..);
    Arc::new(move |lane| open_account(&format!("{prefix}-{run:x}-{}-{}", lane.conn, lane.seq)))
}

/// Opens `count` accounts `{prefix}-0`... on 64 connections; the head after.
async fn open_accounts(host: &Host, prefix: &str, count: usize) -> Result<u64> {
    let opens = (0..count)
        .map(|k| open_account(&format!("{prefix}-{k}")))
        .collect();
    fire_spread(host, 64, opens).await
}

/// A Zipf sampler over `0..n`: `k` with weight `1/(k+1)^s`.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// A log of `accounts` accounts of [`REBUILD_EVENTS_PER_ACCOUNT`] events each, written
/// straight through the event store (as `benches/rebuild.rs` does: many appends in
/// flight, committed in groups); the head.
async fn build_log(data: &Path, accounts: u64) -> Result<u64> {
    use tessera::event_store::{
        AppendError, AppendOutcome, AppendRequest, Durability, EventStore, Metadata, NewEvent,
        SqliteEventStore,
    };
    let store = Arc::new(SqliteEventStore::open(
        &data.join("events.db"),
        Durability::Normal,
    )?);
    let metadata = Metadata {
        command_id: "bench".into(),
        correlation_id: "bench".into(),
        causation_id: "bench".into(),
        principal: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
        request_id: None,
        claims: None,
    };
    let event = |event_type: &str, data: Value| -> Result<NewEvent> {
        Ok(NewEvent {
            event_type: event_type.to_string(),
            data: serde_json::value::to_raw_value(&data)?,
            metadata: metadata.clone(),
        })
    };
    let mut in_flight = FuturesUnordered::new();
    let mut head = 0;
    let appended = |outcome: Option<Result<AppendOutcome, AppendError>>| -> Result<u64> {
        match outcome.context("an append in flight")? {
            Ok(AppendOutcome::Appended(commit)) => Ok(commit.position),
            Ok(AppendOutcome::AlreadyApplied(_)) => bail!("nothing was appended"),
            Err(error) => Err(anyhow::Error::from(error)),
        }
    };
    for account in 0..accounts {
        let mut events = vec![event(
            "AccountOpened",
            json!({ "owner": format!("owner-{account}") }),
        )?];
        for amount in 1..REBUILD_EVENTS_PER_ACCOUNT {
            events.push(event("Deposited", json!({ "amount": amount }))?);
        }
        let request = AppendRequest {
            stream: format!("account-r{account:07}"),
            expected_version: 0,
            events,
            idempotency: None,
        };
        let store = store.clone();
        in_flight.push(async move { store.append(request).await });
        if in_flight.len() >= 1024 {
            head = head.max(appended(in_flight.next().await)?);
        }
    }
    while let Some(outcome) = in_flight.next().await {
        head = head.max(appended(Some(outcome))?);
    }
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    Ok(head)
}

/// Write-to-read lag of the async `bank-totals` under an open-loop load of
/// `lag_rate` deposits per second, offered on a schedule whatever the answers'
/// latency. The accounts are chosen uniformly: under Zipf the hottest stream (a tenth
/// of the commands, one commit each, in turn) would hold the open-loop connections in
/// its queue and cap the rate, and this figure is about the projection, not contention.
///
/// One command in [`LAG_PROBE_EVERY`] is followed, as soon as it is acknowledged, by
/// `GET /queries/totals` with `Tessera-Min-Position` set to the command's position (on
/// other connections): the host answers once `bank-totals` (and the inline
/// `account-balance`, already there) has reached it. The lag is the time from the
/// acknowledgement to that 200 answer, so it includes one query's round trip (the
/// floor, shown as the minimum). Probes are few so they barely add load.
async fn lag_run(host: &Host, settings: &Settings) -> Result<Row> {
    let rate = settings.lag_rate;
    let measure = settings.measure() * 2;
    let warmup = settings.warmup();
    let total = (rate * (warmup + measure).as_secs_f64()) as u64;
    let warm_count = (rate * warmup.as_secs_f64()) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let probe_rx = Arc::new(tokio::sync::Mutex::new(probe_rx));

    let mut probers = Vec::new();
    for _ in 0..LAG_PROBERS {
        let probe_rx = probe_rx.clone();
        let mut conn = Conn::open(host.addr).await?;
        probers.push(tokio::spawn(async move {
            let mut lags = new_histogram();
            let mut stale = 0u64;
            loop {
                let next = probe_rx.lock().await.recv().await;
                let Some((position, acked)) = next else { break };
                let mut probe = get("/queries/totals");
                probe
                    .headers
                    .push(("tessera-min-position", position.to_string()));
                probe.headers.push(("tessera-max-wait", "5000".to_string()));
                let reply = conn.send(&probe).await?;
                if reply.status == 200 {
                    lags.saturating_record(micros(acked.elapsed()));
                } else {
                    stale += 1;
                }
            }
            Ok::<_, anyhow::Error>((lags, stale))
        }));
    }

    let t0 = Instant::now() + Duration::from_millis(50);
    let mut workers = Vec::new();
    for _ in 0..LAG_CONNECTIONS {
        let next = next.clone();
        let probe_tx = probe_tx.clone();
        let mut conn = Conn::open(host.addr).await?;
        workers.push(tokio::spawn(async move {
            let mut latencies = new_histogram();
            let mut rng = fastrand::Rng::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut last_done = t0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let request = deposit(&format!("acct-{}", rng.usize(..ACCOUNTS)), 1);
                let reply = conn.send(&request).await?;
                let done = Instant::now();
                last_done = last_done.max(done);
                if i < warm_count {
                    continue;
                }
                *statuses.entry(reply.status).or_default() += 1;
                // From when it was due, not when it was sent: no coordinated omission.
                latencies.saturating_record(micros(done - due));
                if reply.status == 200 && i.is_multiple_of(LAG_PROBE_EVERY) {
                    let position = serde_json::from_slice::<Position>(&reply.body)?.position;
                    let _ = probe_tx.send((position, done));
                }
            }
            Ok::<_, anyhow::Error>((latencies, statuses, last_done))
        }));
    }
    drop(probe_tx);
    let cpu_before = ProcStats::read(host.pid);
    let mut latencies = new_histogram();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut last_done = t0;
    for worker in workers {
        let (hist, counts, done) = worker.await??;
        latencies.add(&hist)?;
        for (status, n) in counts {
            *statuses.entry(status).or_default() += n;
        }
        last_done = last_done.max(done);
    }
    let cpu_after = ProcStats::read(host.pid);
    let mut lags = new_histogram();
    let mut stale = 0;
    for prober in probers {
        let (hist, n) = prober.await??;
        lags.add(&hist)?;
        stale += n;
    }
    let measured = total - warm_count;
    let span = last_done
        .saturating_duration_since(t0 + warmup)
        .as_secs_f64();
    let achieved = measured as f64 / span.max(1e-9);
    let mut row = Row::new(
        "lag",
        "read-side",
        format!("bank-totals lag at {} commands/s", thousands(rate)),
        "ms p99",
    );
    row.connections = Some(LAG_CONNECTIONS);
    let p99 = ms(lags.value_at_quantile(0.99));
    row.value = Some(p99);
    row.p50_ms = Some(ms(lags.value_at_quantile(0.5)));
    row.p99_ms = Some(p99);
    row.p999_ms = Some(ms(lags.value_at_quantile(0.999)));
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // The whole run's CPU (warm-up included) over all its commands.
        let (cpu, switches) = before.per_op(&after, total);
        row.host_cpu_us_per_op = Some(cpu);
        row.host_switches_per_op = Some(switches);
    }
    row.details = json!({
        "method": "GET /queries/totals with Tessera-Min-Position = the command's position, sent on acknowledgement; lag = acknowledgement to 200",
        "offered_commands_per_second": rate,
        "achieved_commands_per_second": achieved,
        "commands": measured,
        "command_statuses": statuses,
        "command_latency_from_schedule": histogram_json(&latencies),
        "lag": histogram_json(&lags),
        "probes": lags.len(),
        "probes_not_answered_within_5s": stale,
    });
    let mut row = row
        .target(
            "p99 < 5 ms",
            p99 < 5.0 && stale == 0 && achieved >= 0.95 * rate,
        )
        .note(format!(
            "{} probes, min {:.2} ms; achieved {} commands/s, command p99 {:.2} ms from schedule",
            lags.len(),
            ms(lags.min()),
            thousands(achieved),
            ms(latencies.value_at_quantile(0.99))
        ));
    if achieved < 0.95 * rate {
        row = row.note("the host did not keep up with the offered rate");
    }
    if stale > 0 {
        row = row.note(format!("{stale} probes not answered within 5 s"));
    }
    Ok(row)
}

#[derive(Deserialize)]
struct Position {
    position: u64,
}

// ---------------------------------------------------------------------------------
// Load generation
// ---------------------------------------------------------------------------------

/// One request to send.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: String,
    body: Option<Bytes>,
    headers: Vec<(&'static str, String)>,
}

fn post(path: &str, body: String) -> Req {
    Req {
        method: Method::POST,
        path: path.to_string(),
        body: Some(Bytes::from(body)),
        headers: Vec::new(),
    }
}

fn get(path: &str) -> Req {
    Req {
        method: Method::GET,
        path: path.to_string(),
        body: None,
        headers: Vec::new(),
    }
}

struct Reply {
    status: u16,
    /// `Tessera-Cache`: `Some(true)` for a hit.
    cache: Option<bool>,
    body: Bytes,
}

fn expect_ok(reply: Reply) -> Result<Reply> {
    ensure!(
        (200..300).contains(&reply.status),
        "answered {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(reply)
}

/// One keep-alive HTTP/1.1 connection (reopened if the host closes it).
struct Conn {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { addr, sender })
    }

    async fn send(&mut self, req: &Req) -> Result<Reply> {
        if self.sender.is_closed() {
            *self = Conn::open(self.addr).await?;
        }
        self.sender.ready().await?;
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.path.as_str())
            .header(hyper::header::HOST, "127.0.0.1");
        if req.body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder.body(Full::new(req.body.clone().unwrap_or_default()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("tessera-cache")
            .map(|value| value.as_bytes() == b"hit");
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            cache,
            body,
        })
    }
}

/// What a request generator sees: its connection, how many it sent, its own rng.
struct Lane {
    conn: usize,
    seq: u64,
    rng: fastrand::Rng,
}

type Generate = Arc<dyn Fn(&mut Lane) -> Req + Send + Sync>;

/// A closed-loop run's figures.
struct Sample {
    connections: usize,
    ops: u64,
    per_second: f64,
    /// Latencies in microseconds.
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    hits: u64,
    misses: u64,
    host_cpu_us_per_op: Option<f64>,
    host_switches_per_op: Option<f64>,
    /// The load generator's own CPU per operation (it shares the cores).
    client_cpu_us_per_op: Option<f64>,
}

impl Sample {
    fn quantile_ms(&self, q: f64) -> f64 {
        ms(self.hist.value_at_quantile(q))
    }

    fn details(&self) -> Value {
        json!({
            "operations": self.ops,
            "statuses": self.statuses,
            "cache_hits": self.hits,
            "cache_misses": self.misses,
            "latency": histogram_json(&self.hist),
            "client_cpu_us_per_op": self.client_cpu_us_per_op,
        })
    }
}

/// `conns` connections, each sending its next request when the last is answered, for
/// the warm-up and then the measured time; only requests sent and answered within the
/// measured time count.
async fn closed_loop(
    host: &Host,
    conns: usize,
    settings: &Settings,
    generate: Generate,
) -> Result<Sample> {
    let mut opened = Vec::new();
    for _ in 0..conns {
        opened.push(Conn::open(host.addr).await?);
    }
    let start = Instant::now();
    let warm_end = start + settings.warmup();
    let end = warm_end + settings.measure();
    let pid = host.pid;
    let stats = tokio::spawn(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let before = (ProcStats::read(pid), ProcStats::read(std::process::id()));
        tokio::time::sleep_until(end.into()).await;
        (
            before,
            (ProcStats::read(pid), ProcStats::read(std::process::id())),
        )
    });
    let mut tasks = Vec::new();
    for (conn_index, mut conn) in opened.into_iter().enumerate() {
        let generate = generate.clone();
        tasks.push(tokio::spawn(async move {
            let mut lane = Lane {
                conn: conn_index,
                seq: 0,
                rng: fastrand::Rng::new(),
            };
            let mut hist = new_histogram();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let (mut hits, mut misses) = (0, 0);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let request = generate(&mut lane);
                lane.seq += 1;
                let reply = conn.send(&request).await?;
                let done = Instant::now();
                if sent >= warm_end && done <= end {
                    hist.saturating_record(micros(done - sent));
                    *statuses.entry(reply.status).or_default() += 1;
                    match reply.cache {
                        Some(true) => hits += 1,
                        Some(false) => misses += 1,
                        None => {}
                    }
                }
            }
            Ok::<_, anyhow::Error>((hist, statuses, hits, misses))
        }));
    }
    let mut hist = new_histogram();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut hits, mut misses) = (0, 0);
    for task in tasks {
        let (h, s, hit, miss) = task.await??;
        hist.add(&h)?;
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
        hits += hit;
        misses += miss;
    }
    let ops = hist.len();
    let ((before, client_before), (after, client_after)) = stats.await?;
    let client_cpu_us_per_op = match (client_before, client_after) {
        (Some(before), Some(after)) if ops > 0 => Some(before.per_op(&after, ops).0),
        _ => None,
    };
    let (host_cpu_us_per_op, host_switches_per_op) = match (before, after) {
        (Some(before), Some(after)) if ops > 0 => {
            let (cpu, switches) = before.per_op(&after, ops);
            (Some(cpu), Some(switches))
        }
        _ => (None, None),
    };
    Ok(Sample {
        connections: conns,
        ops,
        per_second: ops as f64 / settings.measure().as_secs_f64(),
        hist,
        statuses,
        hits,
        misses,
        host_cpu_us_per_op,
        host_switches_per_op,
        client_cpu_us_per_op,
    })
}

/// One connection alternating `first(i)` and `second(i)`, for the warm-up and then the
/// measured time: their latencies apart.
async fn alternate(
    conn: &mut Conn,
    settings: &Settings,
    first: impl Fn(u64) -> Req,
    second: impl Fn(u64) -> Req,
) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let start = Instant::now();
    let warm_end = start + settings.warmup();
    let end = warm_end + settings.measure();
    let mut a = new_histogram();
    let mut b = new_histogram();
    let mut i = 0;
    while Instant::now() < end {
        for (request, hist) in [(first(i), &mut a), (second(i), &mut b)] {
            let sent = Instant::now();
            expect_ok(conn.send(&request).await?)?;
            if sent >= warm_end {
                hist.saturating_record(micros(sent.elapsed()));
            }
        }
        i += 1;
    }
    Ok((a, b))
}

/// Sends every lane's requests in order, each lane on its own connection, all lanes at
/// once; fails on an answer that is not 2xx. The highest `position` answered.
async fn fire(host: &Host, lanes: Vec<Vec<Req>>) -> Result<u64> {
    let mut tasks = Vec::new();
    for lane in lanes {
        let mut conn = Conn::open(host.addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut head = 0;
            for request in lane {
                let reply = expect_ok(conn.send(&request).await?)?;
                if let Ok(answer) = serde_json::from_slice::<Position>(&reply.body) {
                    head = head.max(answer.position);
                }
            }
            Ok::<_, anyhow::Error>(head)
        }));
    }
    let mut head = 0;
    for task in tasks {
        head = head.max(task.await??);
    }
    Ok(head)
}

/// [`fire`] with the requests dealt over `conns` connections.
async fn fire_spread(host: &Host, conns: usize, requests: Vec<Req>) -> Result<u64> {
    let mut lanes: Vec<Vec<Req>> = (0..conns).map(|_| Vec::new()).collect();
    for (i, request) in requests.into_iter().enumerate() {
        lanes[i % conns].push(request);
    }
    fire(host, lanes).await
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().max(1) as u64
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn histogram_json(hist: &Histogram<u64>) -> Value {
    if hist.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": hist.len(),
        "min_ms": ms(hist.min()),
        "mean_ms": hist.mean() / 1000.0,
        "p50_ms": ms(hist.value_at_quantile(0.5)),
        "p90_ms": ms(hist.value_at_quantile(0.9)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "p999_ms": ms(hist.value_at_quantile(0.999)),
        "max_ms": ms(hist.max()),
    })
}

// ---------------------------------------------------------------------------------
// The host process
// ---------------------------------------------------------------------------------

struct Host {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    group: String,
    role: String,
    log: PathBuf,
    started: Instant,
}

impl Host {
    #[allow(clippy::too_many_arguments)]
    async fn start(
        bin: &Path,
        group: &str,
        role: &str,
        data: &Path,
        plugins: &Path,
        durability: &str,
        extra: &[String],
        log: &Path,
    ) -> Result<Host> {
        // A port that was free a moment ago; the host binds it itself.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--plugins")
            .arg(plugins)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--durability")
            .arg(durability)
            .args(extra)
            .args(
                std::env::var("TESSERA_BENCH_HOST_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut host = Host {
            pid: child.id(),
            child,
            addr,
            group: group.to_string(),
            role: role.to_string(),
            log: log.to_path_buf(),
            started: Instant::now(),
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = host.child.try_wait()? {
                bail!(
                    "the host exited ({status}) before it answered:\n{}",
                    host.log_tail()
                );
            }
            if let Ok(mut conn) = Conn::open(addr).await
                && let Ok(reply) = conn.send(&get("/health")).await
                && reply.status == 200
            {
                return Ok(host);
            }
            if Instant::now() > deadline {
                bail!(
                    "the host did not answer /health in time:\n{}",
                    host.log_tail()
                );
            }
            // Short: the languages figures time a start to the first answer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Its peak RSS, then a SIGTERM (a kill if it takes more than 20 s).
    async fn stop(mut self) -> HostRecord {
        let peak = proc_status_kib(self.pid, "VmHWM").map(|kib| kib as f64 / 1024.0);
        let seconds = self.started.elapsed().as_secs_f64();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("  the host took more than 20 s to stop; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        HostRecord {
            group: self.group.clone(),
            role: self.role.clone(),
            peak_rss_mb: peak,
            seconds,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET /projections`.
async fn projections(client: &reqwest::Client, url: &str) -> Result<Vec<Value>> {
    let body: Value = client
        .get(format!("{url}/projections"))
        .send()
        .await?
        .json()
        .await?;
    body["projections"]
        .as_array()
        .cloned()
        .context("no projections in the answer")
}

/// Waits until every active version of `names` is live at `head` or past it.
async fn wait_projections(host: &Host, names: &[&str], head: u64) -> Result<()> {
    wait_projections_for(host, names, head, Duration::from_secs(300)).await
}

async fn wait_projections_for(
    host: &Host,
    names: &[&str],
    head: u64,
    limit: Duration,
) -> Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{}", host.addr);
    let started = Instant::now();
    loop {
        let list = projections(&client, &url).await?;
        let ready = names.iter().all(|name| {
            list.iter().any(|p| {
                p["name"] == *name
                    && p["role"] == "active"
                    && p["status"] == "live"
                    && p["checkpoint"].as_u64() >= Some(head)
            })
        });
        if ready {
            return Ok(());
        }
        ensure!(
            started.elapsed() < limit,
            "projections not live at {head} after {limit:?}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU time and context switches of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct ProcStats {
    /// utime + stime, in clock ticks (USER_HZ, 100 per second on Linux).
    ticks: u64,
    switches: u64,
}

impl ProcStats {
    fn read(pid: u32) -> Option<ProcStats> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name's closing parenthesis, from field 3 on.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                for line in status.lines() {
                    if let Some(rest) = line
                        .strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                    {
                        switches += rest.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
        Some(ProcStats {
            ticks: utime + stime,
            switches,
        })
    }

    /// Microseconds of CPU and context switches per operation between two readings.
    /// (Threads that ended in between take their switches with them.)
    fn per_op(&self, after: &ProcStats, ops: u64) -> (f64, f64) {
        let ops = ops.max(1) as f64;
        let cpu_us = after.ticks.saturating_sub(self.ticks) as f64 * 10_000.0;
        let switches = after.switches.saturating_sub(self.switches) as f64;
        (cpu_us / ops, switches / ops)
    }
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`.
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------

fn machine(settings: &Settings, bin: &Path, plugins: &PluginFiles, dir: &Path) -> Result<Machine> {
    let (fsync_p50_ms, fsync_p99_ms, fsync_samples) = fsync_latency(dir)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        });
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
                .map(|kib| kib / 1024)
        });
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        memory_mb,
        fsync_p50_ms,
        fsync_p99_ms,
        fsync_samples,
        bench_dir: dir.parent().unwrap_or(dir).display().to_string(),
        filesystem: filesystem(dir),
        durability: settings.durability.clone(),
        git_commit: git(&["rev-parse", "HEAD"]),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        date: jiff::Timestamp::now().to_string(),
        load_average_start: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.trim().to_string()),
        load_average_end: None,
        binary: bin.display().to_string(),
        plugins: plugins.profile.clone(),
        load_generator: format!(
            "hyper 1 HTTP/1.1 keep-alive, one connection per client, tokio with {} worker threads, in the same machine",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    })
}

/// 4 KiB appended and `File::sync_all`, in a loop for up to a second (at most 1000
/// times), in `dir`: p50, p99 (ms) and the samples.
fn fsync_latency(dir: &Path) -> Result<(f64, f64, u64)> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let mut hist = new_histogram();
    let started = Instant::now();
    while hist.len() < 1000 && (started.elapsed() < Duration::from_secs(1) || hist.len() < 20) {
        let at = Instant::now();
        file.write_all(&block)?;
        file.sync_all()?;
        hist.saturating_record(at.elapsed().as_nanos().max(1) as u64 / 1000);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok((
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99)),
        hist.len(),
    ))
}

/// The type of the filesystem `dir` is on, from `/proc/mounts`.
fn filesystem(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (device, point, kind) = (parts.next()?, parts.next()?, parts.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{kind} ({device})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

// ---------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------

const HEADER: [&str; 10] = [
    "figure",
    "conns",
    "result",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "cpu us/op",
    "cs/op",
    "target",
    "met",
];

fn print_header() {
    println!(
        "{:<46} {:>5} {:>20} {:>8} {:>8} {:>8} {:>9} {:>6}  {:<24} {}",
        HEADER[0],
        HEADER[1],
        HEADER[2],
        HEADER[3],
        HEADER[4],
        HEADER[5],
        HEADER[6],
        HEADER[7],
        HEADER[8],
        HEADER[9]
    );
    println!("{}", "-".repeat(150));
}

fn print_row(row: &Row) {
    let number = |value: Option<f64>, digits: usize| {
        value.map_or("-".to_string(), |v| format!("{v:.digits$}"))
    };
    let met = match row.met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    let mut line = format!(
        "{:<46} {:>5} {:>20} {:>8} {:>8} {:>8} {:>9} {:>6}  {:<24} {}",
        row.label,
        row.connections.map_or("-".to_string(), |c| c.to_string()),
        row.result_text(),
        number(row.p50_ms, 2),
        number(row.p99_ms, 2),
        number(row.p999_ms, 2),
        number(row.host_cpu_us_per_op, 0),
        number(row.host_switches_per_op, 1),
        row.target.as_deref().unwrap_or("-"),
        met
    );
    if let Some(note) = &row.note {
        let _ = write!(line, "  ({note})");
    }
    println!("{line}");
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let whole = value.round() as i64;
    let digits = whole.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 { format!("-{out}") } else { out }
}
