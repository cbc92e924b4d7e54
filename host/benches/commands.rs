//! Durable commands per second through the whole command path: HTTP, the command bus,
//! a fresh Wasm instance per command, and the SQLite write store with group commit
//! (`synchronous=FULL`: one fsync per group).
//!
//! Run with `cargo bench -p tessera --bench commands`. A plain `main` (no harness): it
//! starts a host in this process on `127.0.0.1:0`, opens [`ACCOUNTS`] accounts, then
//! for each client count sends deposits to random accounts for [`DURATION`] and prints
//! commands per second and latency percentiles. Two setups: the command handler alone,
//! and with the bank's projections deployed (the inline `account-balance` makes every
//! response wait for its read model). The load generator shares the machine's cores
//! with the host, so the figures are a floor, not a ceiling.
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tessera_test_support::plugins;

const ACCOUNTS: usize = 1000;
const DURATION: Duration = Duration::from_secs(5);
const CLIENTS: [usize; 3] = [1, 16, 64];

#[tokio::main]
async fn main() -> Result<()> {
    println!("durable commands per second (durability full), {DURATION:?} per run");
    for (setup, files) in [
        ("command handler only", vec![plugins::BANK_ACCOUNT]),
        (
            "with the bank's projections",
            vec![
                plugins::BANK_ACCOUNT,
                plugins::ACCOUNT_BALANCE,
                plugins::BANK_TOTALS,
                plugins::BANK_QUERIES,
            ],
        ),
    ] {
        let host = Host::start(&files).await?;
        host.open_accounts().await?;
        println!("\n{setup}:");
        println!(
            "{:>8} {:>12} {:>10} {:>10} {:>10}",
            "clients", "commands/s", "p50 ms", "p99 ms", "max ms"
        );
        for clients in CLIENTS {
            let run = host.load(clients).await?;
            println!(
                "{:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
                clients, run.per_second, run.p50, run.p99, run.max
            );
        }
        host.stop().await;
    }
    Ok(())
}

struct Host {
    url: String,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Run {
    per_second: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Host {
    async fn start(files: &[&str]) -> Result<Host> {
        let dir = tempfile::TempDir::new()?;
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir)?;
        for file in files {
            let name = std::path::Path::new(file)
                .file_name()
                .context("file name")?;
            std::fs::copy(file, plugins_dir.join(name))?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let config = tessera::Config::new(dir.path().join("data"), plugins_dir);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = tessera::serve(listener, config, shutdown).await {
                eprintln!("host failed: {error}");
            }
        });
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client.get(format!("{url}/health")).send().await.is_ok() {
                return Ok(Host {
                    url,
                    _dir: dir,
                    stop,
                    task,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("host never became ready")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    async fn open_accounts(&self) -> Result<()> {
        let client = reqwest::Client::new();
        for id in 0..ACCOUNTS {
            let status = client
                .post(format!("{}/commands/open-account", self.url))
                .json(&json!({ "aggregate_id": id.to_string(), "payload": { "owner": "bench" } }))
                .send()
                .await?
                .status();
            if !status.is_success() {
                bail!("open-account answered {status}");
            }
        }
        Ok(())
    }

    async fn load(&self, clients: usize) -> Result<Run> {
        let url = Arc::new(self.url.clone());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..clients {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut rng = fastrand::Rng::with_seed(client as u64);
                while started.elapsed() < DURATION {
                    let account = rng.usize(..ACCOUNTS);
                    let sent = Instant::now();
                    let response = http
                        .post(format!("{url}/commands/deposit"))
                        .json(&json!({ "aggregate_id": account.to_string(), "payload": { "amount": 1 } }))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("deposit answered {}", response.status());
                    }
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Ok(Run {
            per_second: latencies.len() as f64 / elapsed,
            p50: at(0.50),
            p99: at(0.99),
            max: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        })
    }
}
