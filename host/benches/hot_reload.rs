//! How long a plugin change takes to reach clients: from the moment a new `.wasm`
//! lands in the plugins folder (an atomic rename) or a `PUT /plugins/{name}` is sent,
//! to the first request answered by the new code.
//!
//! Run with `cargo bench -p tessera --bench hot_reload`. A plain `main` (no harness):
//! it starts a host in this process on `127.0.0.1:0` with a temporary folder, then for
//! each plugin swaps versions for [`ROUNDS`] rounds per way, polling with a request
//! every [`POLL`], and prints min/median/max in milliseconds.
//!
//! Which code answered: `swap` and `swap-query` (the test plugins `test-swap-v1`/`-v2`
//! and `test-swap-query-v1`/`-v2`) stamp their answers with `v1` or `v2`. The bank
//! account handler's answers do not say which build answered, so for it the probe is
//! `GET /plugins` showing the new digest (the listing changes with the catalog swap
//! that routes requests to the new code).
//!
//! Two kinds of change are timed. "new": every round's bytes were never seen (each
//! gets a unique custom section), so the host compiles them on the way. "known": the
//! host alternates between two versions it has compiled before, which its compiled
//! code cache serves. Changes in the folder include the watcher's debounce (150 ms).
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera_test_support::plugins;

/// Timed rounds per plugin and way.
const ROUNDS: usize = 10;
/// The pause between two probes.
const POLL: Duration = Duration::from_millis(1);
/// A round that takes longer than this is reported as a failure.
const ROUND_BOUND: Duration = Duration::from_secs(20);

/// How a benchmark tells which code answers.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `POST /commands/swap-ping`: the events' `code`.
    SwapCommand,
    /// `GET /queries/swap-probe`: the answer's `code`.
    SwapQuery,
    /// `GET /plugins`: the digest served from the file.
    Listing,
}

/// One plugin to swap: its name (and file `<name>.wasm`), its two versions, and how
/// to tell them apart.
struct Subject {
    name: &'static str,
    versions: [&'static str; 2],
    probe: Probe,
}

/// How a change reaches the host.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Folder,
    Put,
}

/// One version of a plugin as deployed in a round: its bytes, and what the probe
/// sees when it answers.
struct Version {
    bytes: Vec<u8>,
    /// `v1`/`v2` for the swap plugins; the digest for the listing probe.
    mark: String,
}

struct Bench {
    url: String,
    client: reqwest::Client,
    dir: std::path::PathBuf,
    /// Makes each probe's aggregate id unique, so no command folds a long stream.
    pings: u64,
    /// Makes each "new" version's bytes unique.
    nonce: u64,
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let temp = tempfile::TempDir::new()?;
    let dir = temp.path().join("plugins");
    std::fs::create_dir_all(&dir)?;
    for (file, source) in [
        ("bank-account.wasm", plugins::BANK_ACCOUNT),
        ("account-balance.wasm", plugins::ACCOUNT_BALANCE),
        ("swap.wasm", plugins::TEST_SWAP_V1),
        ("swap-query.wasm", plugins::TEST_SWAP_QUERY_V1),
    ] {
        std::fs::copy(source, dir.join(file)).with_context(|| format!("copy {source}"))?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut config = tessera::Config::new(temp.path().join("data"), &dir);
    config.durability = tessera::event_store::Durability::Normal;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = tokio::spawn(tessera::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let mut bench = Bench {
        url,
        client: reqwest::Client::new(),
        dir,
        pings: 0,
        nonce: 0,
    };
    bench.wait_ready().await?;

    let subjects = [
        Subject {
            name: "bank-account",
            versions: [plugins::BANK_ACCOUNT, plugins::BANK_ACCOUNT],
            probe: Probe::Listing,
        },
        Subject {
            name: "swap",
            versions: [plugins::TEST_SWAP_V1, plugins::TEST_SWAP_V2],
            probe: Probe::SwapCommand,
        },
        Subject {
            name: "swap-query",
            versions: [plugins::TEST_SWAP_QUERY_V1, plugins::TEST_SWAP_QUERY_V2],
            probe: Probe::SwapQuery,
        },
    ];
    println!(
        "hot reload: time from the change to the first request answered by the new code \
         ({ROUNDS} rounds, a probe every {POLL:?}; folder changes include the 150 ms debounce)"
    );
    println!(
        "{:<14} {:<16} {:<6} {:>9} {:>9} {:>9}",
        "plugin", "change", "code", "min ms", "median ms", "max ms"
    );
    for subject in &subjects {
        for way in [Way::Folder, Way::Put] {
            for fresh in [true, false] {
                let mut times = bench.measure(subject, way, fresh).await?;
                times.sort();
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "{:<14} {:<16} {:<6} {:>9.1} {:>9.1} {:>9.1}",
                    subject.name,
                    match way {
                        Way::Folder => "folder (rename)",
                        Way::Put => "PUT /plugins",
                    },
                    if fresh { "new" } else { "known" },
                    ms(times[0]),
                    ms(times[times.len() / 2]),
                    ms(times[times.len() - 1]),
                );
            }
        }
    }

    let _ = stop.send(());
    host.await??;
    Ok(())
}

impl Bench {
    async fn wait_ready(&self) -> Result<()> {
        for _ in 0..600 {
            if let Ok(response) = self.client.get(format!("{}/health", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the host never became ready")
    }

    /// Times [`ROUNDS`] changes of `subject` made `way`, alternating its versions.
    /// `fresh`: every round's bytes are new to the host.
    async fn measure(&mut self, subject: &Subject, way: Way, fresh: bool) -> Result<Vec<Duration>> {
        let known = [
            self.version(subject, 0, false)?,
            self.version(subject, 1, false)?,
        ];
        // Untimed: make both known versions compiled (and cached) once, and leave the
        // host serving the first.
        if !fresh {
            for version in known.iter().rev() {
                self.change(subject, way, version).await?;
                self.wait_for(subject, version).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let mut times = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let which = (round + 1) % 2;
            let version = if fresh {
                self.version(subject, which, true)?
            } else {
                Version {
                    bytes: known[which].bytes.clone(),
                    mark: known[which].mark.clone(),
                }
            };
            let started = self.change(subject, way, &version).await?;
            self.wait_for(subject, &version).await?;
            times.push(started.elapsed());
            // Let the watcher notice its own deploy's file and settle.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(times)
    }

    /// Version `which` of `subject`; `fresh`: with a custom section never used before.
    fn version(&mut self, subject: &Subject, which: usize, fresh: bool) -> Result<Version> {
        let mut bytes = std::fs::read(subject.versions[which])?;
        if fresh || (which == 1 && subject.versions[0] == subject.versions[1]) {
            self.nonce += 1;
            let tag = if fresh {
                format!("round {}", self.nonce)
            } else {
                "known".to_string()
            };
            append_custom_section(&mut bytes, "tessera-bench", tag.as_bytes());
        }
        let mark = match subject.probe {
            Probe::Listing => hex::encode(Sha256::digest(&bytes)),
            Probe::SwapCommand | Probe::SwapQuery => format!("v{}", which + 1),
        };
        Ok(Version { bytes, mark })
    }

    /// Makes the host see `version` of `subject`; returns when the change was made:
    /// the rename (the file was written beside before), or the request sent.
    async fn change(&self, subject: &Subject, way: Way, version: &Version) -> Result<Instant> {
        match way {
            Way::Folder => {
                let file = format!("{}.wasm", subject.name);
                let partial = self.dir.join(format!(".{file}.partial"));
                std::fs::write(&partial, &version.bytes)?;
                let started = Instant::now();
                std::fs::rename(&partial, self.dir.join(file))?;
                Ok(started)
            }
            Way::Put => {
                let started = Instant::now();
                let response = self
                    .client
                    .put(format!("{}/plugins/{}", self.url, subject.name))
                    .body(version.bytes.clone())
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("deploy refused: {}", response.text().await?);
                }
                Ok(started)
            }
        }
    }

    /// Probes every [`POLL`] until the host answers with `version`'s code.
    async fn wait_for(&mut self, subject: &Subject, version: &Version) -> Result<()> {
        let started = Instant::now();
        loop {
            let seen = self.probe(subject).await?;
            if seen.as_deref() == Some(version.mark.as_str()) {
                return Ok(());
            }
            if started.elapsed() > ROUND_BOUND {
                bail!(
                    "{} never answered with {} (last seen {seen:?})",
                    subject.name,
                    version.mark
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What the code serving `subject` says now.
    async fn probe(&mut self, subject: &Subject) -> Result<Option<String>> {
        let body: Value = match subject.probe {
            Probe::SwapCommand => {
                self.pings += 1;
                let body =
                    json!({ "aggregate_id": format!("bench-{}", self.pings), "payload": {} });
                let response = self
                    .client
                    .post(format!("{}/commands/swap-ping", self.url))
                    .json(&body)
                    .send()
                    .await?;
                let body: Value = response.json().await?;
                return Ok(body["events"][0]["data"]["code"].as_str().map(String::from));
            }
            Probe::SwapQuery => {
                self.client
                    .get(format!("{}/queries/swap-probe", self.url))
                    .send()
                    .await?
                    .json()
                    .await?
            }
            Probe::Listing => {
                let listing: Value = self
                    .client
                    .get(format!("{}/plugins", self.url))
                    .send()
                    .await?
                    .json()
                    .await?;
                let file = format!("{}.wasm", subject.name);
                return Ok(listing["plugins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|entry| entry["file"] == file.as_str())
                    .and_then(|entry| entry["digest"].as_str())
                    .map(String::from));
            }
        };
        Ok(body["code"].as_str().map(String::from))
    }
}

/// Appends a custom section to a component: other bytes, the same code.
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut content = Vec::new();
    leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    wasm.push(0); // the custom section's id
    leb128(wasm, content.len());
    wasm.extend_from_slice(&content);
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
