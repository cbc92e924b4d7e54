//! How fast projections catch up: a log of a million events (or
//! `TESSERA_BENCH_EVENTS`) appended straight through the event store, then a host
//! started on it with the `account-balance` (inline) and `bank-totals` (async)
//! projections, timed until each is live at the head; then a rebuild of
//! `account-balance` (`POST /projections/account-balance/rebuild`), timed until the new
//! generation has taken over.
//!
//! Run with `cargo bench -p tessera --bench rebuild`. A plain program (no harness): it
//! prints its figures.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use tessera::event_store::{
    AppendOutcome, AppendRequest, Durability, EventStore, Metadata, NewEvent, SqliteEventStore,
};
use tessera_test_support::plugins;

/// Events per account: one `AccountOpened`, then deposits.
const EVENTS_PER_ACCOUNT: usize = 50;
/// Appends in flight at once while the log is built: the store commits them in groups.
const IN_FLIGHT: usize = 1024;
/// The pause between two looks at `GET /projections`.
const POLL: Duration = Duration::from_millis(20);
/// The longest any phase may take.
const LIMIT: Duration = Duration::from_secs(3600);

fn main() -> Result<()> {
    let events: usize = match std::env::var("TESSERA_BENCH_EVENTS") {
        Ok(text) => text.parse().context("TESSERA_BENCH_EVENTS")?,
        Err(_) => 1_000_000,
    };
    let accounts = events.div_ceil(EVENTS_PER_ACCOUNT);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(accounts))
}

async fn run(accounts: usize) -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let data = dir.path().join("data");
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    for plugin in [plugins::ACCOUNT_BALANCE, plugins::BANK_TOTALS] {
        let name = Path::new(plugin).file_name().context("file name")?;
        std::fs::copy(plugin, plugins_dir.join(name))?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("rebuild benchmark: {cores} cores");

    let started = Instant::now();
    let head = build_log(&data, accounts).await?;
    let took = started.elapsed();
    println!(
        "log: {head} events ({accounts} accounts x {EVENTS_PER_ACCOUNT}) appended in {:.2} s ({:.0} events/s)",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64()
    );

    // A host on the log: both projections start from nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = tessera::Config::new(&data, &plugins_dir);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let host = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        tessera::serve(listener, config, shutdown).await
    });
    let client = reqwest::Client::new();
    let names = ["account-balance", "bank-totals"];
    let mut live_at: Vec<Option<Duration>> = vec![None; names.len()];
    let mut reported_rate: Vec<f64> = vec![0.0; names.len()];
    while live_at.iter().any(Option::is_none) {
        ensure!(started.elapsed() < LIMIT, "the catch-up took too long");
        if let Ok(list) = statuses(&client, &url).await {
            for (n, name) in names.iter().enumerate() {
                let Some(status) = list.iter().find(|p| p["name"] == *name) else {
                    continue;
                };
                let rate = status["progress"]["events_per_second"]
                    .as_f64()
                    .unwrap_or(0.0);
                reported_rate[n] = reported_rate[n].max(rate);
                if live_at[n].is_none()
                    && status["status"] == "live"
                    && status["checkpoint"].as_u64() == Some(head)
                {
                    live_at[n] = Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    println!(
        "catch-up from position 0 (host start to live at the head, both projections running):"
    );
    for (n, name) in names.iter().enumerate() {
        let took = live_at[n].expect("live");
        println!(
            "  {name:<16} {:.2} s, {:.0} events/s through the Wasm projection (host-reported peak {:.0}/s)",
            took.as_secs_f64(),
            head as f64 / took.as_secs_f64(),
            reported_rate[n]
        );
    }

    // A rebuild of account-balance beside the live generation.
    let started = Instant::now();
    let response = client
        .post(format!("{url}/projections/account-balance/rebuild"))
        .send()
        .await?;
    ensure!(
        response.status().as_u16() == 202,
        "rebuild refused: {}",
        response.status()
    );
    let building: Value = response.json().await?;
    let generation = building["building"]["generation"]
        .as_u64()
        .context("generation")?;
    let mut peak: f64 = 0.0;
    loop {
        ensure!(started.elapsed() < LIMIT, "the rebuild took too long");
        if let Ok(list) = statuses(&client, &url).await {
            let generations: Vec<&Value> = list
                .iter()
                .filter(|p| p["name"] == "account-balance")
                .collect();
            for status in &generations {
                if status["generation"] == generation {
                    peak = peak.max(
                        status["progress"]["events_per_second"]
                            .as_f64()
                            .unwrap_or(0.0),
                    );
                }
            }
            if let [only] = generations.as_slice()
                && only["generation"] == generation
                && only["role"] == "active"
                && only["checkpoint"].as_u64() == Some(head)
            {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed();
    println!(
        "rebuild of account-balance (generation {generation}, beside the live one, until it took over): {:.2} s, {:.0} events/s (host-reported peak {:.0}/s)",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64(),
        peak
    );

    let _ = stop.send(());
    host.await??;
    Ok(())
}

/// Appends `accounts` accounts of [`EVENTS_PER_ACCOUNT`] events each, many appends in
/// flight at once. Returns the head.
async fn build_log(data: &Path, accounts: usize) -> Result<u64> {
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
    for account in 0..accounts {
        let mut events = vec![event(
            "AccountOpened",
            json!({ "owner": format!("owner-{account}") }),
        )?];
        for deposit in 1..EVENTS_PER_ACCOUNT {
            events.push(event("Deposited", json!({ "amount": deposit }))?);
        }
        let request = AppendRequest {
            stream: format!("account-{account:07}"),
            expected_version: 0,
            events,
            idempotency: None,
        };
        let store = store.clone();
        in_flight.push(async move { store.append(request).await });
        if in_flight.len() >= IN_FLIGHT {
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

/// The position an append reached.
fn appended(
    outcome: Option<Result<AppendOutcome, tessera::event_store::AppendError>>,
) -> Result<u64> {
    match outcome.context("an append in flight")?? {
        AppendOutcome::Appended(commit) => Ok(commit.position),
        AppendOutcome::AlreadyApplied(_) => anyhow::bail!("nothing was appended"),
    }
}

/// `GET /projections`.
async fn statuses(client: &reqwest::Client, url: &str) -> Result<Vec<Value>> {
    let body: Value = client
        .get(format!("{url}/projections"))
        .send()
        .await?
        .json()
        .await?;
    body["projections"]
        .as_array()
        .cloned()
        .context("projections")
}
