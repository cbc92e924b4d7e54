//! Helpers for the read-side tests: queries with freshness headers, projection status,
//! walks over paged queries, and a real `tessera` process (the built binary) that a
//! test can SIGKILL and restart on the same data folder.
//!
//! Every helper takes a client and a base URL, so the same code talks to an in-process
//! [`super::TestHost`] and to a [`Tessera`] child process.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::Reply;

/// The pause between two polls of a bounded wait.
const POLL: Duration = Duration::from_millis(50);

/// `GET /queries/{name}?{query}` with extra headers. `query` must already be URL-safe.
pub async fn query(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    query: &str,
    headers: &[(&str, String)],
) -> Result<Reply> {
    let mut target = format!("{url}/queries/{name}");
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    let mut request = client.get(target);
    for (header, value) in headers {
        request = request.header(*header, value.as_str());
    }
    Reply::read(request.send().await?).await
}

/// `POST /queries/{name}` with a JSON body of parameters and extra headers.
pub async fn query_post(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    params: &Value,
    headers: &[(&str, String)],
) -> Result<Reply> {
    let mut request = client.post(format!("{url}/queries/{name}")).json(params);
    for (header, value) in headers {
        request = request.header(*header, value.as_str());
    }
    Reply::read(request.send().await?).await
}

/// Asks a query until it answers at least as fresh as `position`: each try waits on
/// the host (`Tessera-Min-Position`, `Tessera-Max-Wait`), and a `stale` answer, or a
/// projection not set up yet (`projection_unavailable`), is retried, a bounded
/// number of times.
pub async fn query_at(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    query_string: &str,
    position: u64,
) -> Result<Reply> {
    let headers = [
        ("tessera-min-position", position.to_string()),
        ("tessera-max-wait", "5000".to_string()),
    ];
    let mut last = None;
    for _ in 0..100 {
        let reply = query(client, url, name, query_string, &headers).await?;
        if reply.status == 503 && reply.body["error"]["code"] == "stale" {
            last = Some(reply);
            continue;
        }
        if reply.status == 503 && reply.body["error"]["code"] == "projection_unavailable" {
            last = Some(reply);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(reply);
    }
    bail!("query {name} never reached position {position}: {last:?}")
}

/// `GET /projections`: every projection version's status.
pub async fn projections(client: &reqwest::Client, url: &str) -> Result<Vec<Value>> {
    let response = client.get(format!("{url}/projections")).send().await?;
    ensure!(
        response.status().is_success(),
        "GET /projections failed: {}",
        response.status()
    );
    let body: Value = response.json().await?;
    body["projections"]
        .as_array()
        .cloned()
        .context("projections list")
}

/// The projection named `name` in a `GET /projections` list.
pub fn projection<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["name"] == name)
}

/// The write store's head, from `GET /health`.
pub async fn head(client: &reqwest::Client, url: &str) -> Result<u64> {
    let body: Value = client
        .get(format!("{url}/health"))
        .send()
        .await?
        .json()
        .await?;
    body["head"].as_u64().context("head")
}

/// Waits (bounded) until every projection is `live` at the write head and `names` are
/// all among them; returns their statuses.
pub async fn wait_live(client: &reqwest::Client, url: &str, names: &[&str]) -> Result<Vec<Value>> {
    // Up to two minutes: a rebuild of thousands of events on a slow machine.
    wait_live_for(client, url, names, 2400).await
}

/// [`wait_live`] with at most `polls` looks, 50 ms apart.
pub async fn wait_live_for(
    client: &reqwest::Client,
    url: &str,
    names: &[&str],
    polls: usize,
) -> Result<Vec<Value>> {
    let mut last = Vec::new();
    for _ in 0..polls {
        let head = head(client, url).await?;
        last = projections(client, url).await?;
        let all_named = names.iter().all(|n| projection(&last, n).is_some());
        let all_live = last.iter().all(|p| {
            p["status"] == "live" && p["checkpoint"].as_u64() == Some(head) && p["lag_events"] == 0
        });
        if all_named && all_live {
            return Ok(last);
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the projections never all became live at the head: {last:#?}")
}

/// Every account through `accounts`, page by page (at least as fresh as `position`).
pub async fn all_accounts(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
    position: u64,
) -> Result<Vec<Value>> {
    let mut accounts = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut query_string = format!("limit={limit}");
        if let Some(cursor) = &cursor {
            query_string.push_str(&format!("&cursor={cursor}"));
        }
        let reply = query_at(client, url, "accounts", &query_string, position).await?;
        ensure!(reply.status == 200, "accounts failed: {}", reply.body);
        let items = reply.body["items"].as_array().context("items")?;
        accounts.extend(items.iter().cloned());
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(accounts),
        }
    }
    bail!("the accounts walk never ended")
}

/// The whole log through `GET /events`.
pub async fn read_log(client: &reqwest::Client, url: &str) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut after = 0;
    for _ in 0..100_000 {
        let response = client
            .get(format!("{url}/events?after={after}&limit=1000"))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "GET /events: {}",
            response.status()
        );
        let page: Value = response.json().await?;
        let batch = page["events"].as_array().context("events")?;
        if batch.is_empty() {
            return Ok(events);
        }
        events.extend(batch.iter().cloned());
        after = page["next_after"].as_u64().context("next_after")?;
    }
    bail!("the log never ended")
}

/// What the bank's read models should hold, computed from the log alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Per account id: owner, balance, version (the stream's last version).
    pub accounts: BTreeMap<String, (String, i64, u64)>,
    /// Per UTC day: deposits, deposit count, withdrawals, withdrawal count.
    pub days: BTreeMap<String, (i64, i64, i64, i64)>,
    /// How many bank events the log holds.
    pub events: u64,
}

impl Ledger {
    /// Folds the events of `account-*` streams, in log order, up to `until` (inclusive).
    pub fn from_log(log: &[Value], until: u64) -> Result<Ledger> {
        let mut ledger = Ledger::default();
        for event in log {
            let position = event["position"].as_u64().context("position")?;
            if position > until {
                break;
            }
            ledger.fold(event)?;
        }
        Ok(ledger)
    }

    /// Applies one event.
    pub fn fold(&mut self, event: &Value) -> Result<()> {
        let stream = event["stream"].as_str().context("stream")?;
        let Some(id) = stream.strip_prefix("account-") else {
            return Ok(());
        };
        let version = event["version"].as_u64().context("version")?;
        let day = event["timestamp"]
            .as_str()
            .and_then(|t| t.get(..10))
            .context("timestamp")?
            .to_string();
        let data = &event["data"];
        self.events += 1;
        match event["type"].as_str().context("type")? {
            "AccountOpened" => {
                let owner = data["owner"].as_str().context("owner")?.to_string();
                ensure!(
                    self.accounts
                        .insert(id.to_string(), (owner, 0, version))
                        .is_none(),
                    "account {id} opened twice in the log"
                );
            }
            kind @ ("Deposited" | "Withdrawn") => {
                let amount = data["amount"].as_i64().context("amount")?;
                let account = self
                    .accounts
                    .get_mut(id)
                    .with_context(|| format!("{kind} before AccountOpened on {id}"))?;
                let entry = self.days.entry(day).or_default();
                if kind == "Deposited" {
                    account.1 += amount;
                    entry.0 += amount;
                    entry.1 += 1;
                } else {
                    account.1 -= amount;
                    entry.2 += amount;
                    entry.3 += 1;
                }
                account.2 = version;
            }
            other => bail!("unexpected event type {other}"),
        }
        Ok(())
    }

    /// Every account's balance, by id.
    pub fn balances(&self) -> BTreeMap<String, i64> {
        self.accounts
            .iter()
            .map(|(id, (_, balance, _))| (id.clone(), *balance))
            .collect()
    }

    pub fn total_balance(&self) -> i64 {
        self.accounts.values().map(|(_, balance, _)| balance).sum()
    }
}

/// The database file of projection `name` under a host's data folder: the newest
/// `*.db` in `data/projections/<name>/` (one per schema version or generation).
pub fn projection_db(data: &Path, name: &str) -> Result<PathBuf> {
    let dir = data.join("projections").join(name);
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "db") {
            let modified = std::fs::metadata(&path)?.modified()?;
            if newest.as_ref().is_none_or(|(m, _)| modified > *m) {
                newest = Some((modified, path));
            }
        }
    }
    newest
        .map(|(_, path)| path)
        .with_context(|| format!("no database in {}", dir.display()))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The real `tessera` binary serving a data folder, as a child process. Dropping it
/// kills the process, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Tessera {
    child: Option<Child>,
    pub url: String,
    pub client: reqwest::Client,
    pub data: PathBuf,
    pub plugins: PathBuf,
    /// Where the process's stdout and stderr go (appended across restarts).
    pub log: PathBuf,
}

impl Tessera {
    /// Starts `tessera serve` on `data` and `plugins`, on a free port, and waits until
    /// it answers `GET /health`.
    pub async fn start(data: &Path, plugins: &Path, log: &Path) -> Result<Tessera> {
        let mut last_error = None;
        // The port was free when we looked; another process may take it before the
        // child binds it, so a few tries.
        for _ in 0..5 {
            let port = free_port()?;
            let output = File::options().create(true).append(true).open(log)?;
            let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
                .arg("serve")
                .arg("--data")
                .arg(data)
                .arg("--plugins")
                .arg(plugins)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .env("RUST_LOG", "warn,tessera=info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(output.try_clone()?)
                .stderr(output)
                .spawn()
                .context("cannot start the tessera binary")?;
            let mut host = Tessera {
                child: Some(child),
                url: format!("http://127.0.0.1:{port}"),
                client: reqwest::Client::new(),
                data: data.to_path_buf(),
                plugins: plugins.to_path_buf(),
                log: log.to_path_buf(),
            };
            match host.wait_ready().await {
                Ok(()) => return Ok(host),
                Err(error) => {
                    host.kill();
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one try"))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        for _ in 0..1200 {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("tessera exited with {status}; log:\n{}", self.log_tail());
            }
            if let Ok(response) = self.client.get(format!("{}/health", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "tessera at {} never became ready; log:\n{}",
            self.url,
            self.log_tail()
        )
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The end of the process's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Tessera {
    fn drop(&mut self) {
        self.kill();
    }
}
