//! Helpers for the projection lifecycle tests: hosts on prepared data folders (a copy
//! of another host's log, a log appended straight through the event store) or with an
//! admin token, the lifecycle endpoints, the status of one projection version, and
//! bounded waits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::event_store::{
    AppendOutcome, AppendRequest, Durability, EventStore, Metadata, NewEvent, SqliteEventStore,
};

use super::{Reply, TestHost};

/// The longest a bounded wait waits: generous, for a slow machine under load.
pub const WAIT: Duration = Duration::from_secs(120);
/// The pause between two polls of a bounded wait.
const POLL: Duration = Duration::from_millis(10);

/// A fresh folder for a host: `plugins/` holding copies of `plugins`, and an empty
/// `data/` for the caller to prepare (a log copied from another host, or appended
/// with [`append_bank_log`]) before [`start_in`].
pub fn new_dir(plugins: &[&str]) -> Result<Arc<TempDir>> {
    let dir = Arc::new(TempDir::new()?);
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    std::fs::create_dir_all(dir.path().join("data"))?;
    for plugin in plugins {
        let name = Path::new(plugin).file_name().context("plugin file name")?;
        std::fs::copy(plugin, plugins_dir.join(name)).with_context(|| format!("copy {plugin}"))?;
    }
    Ok(dir)
}

/// The data folder of a folder made by [`new_dir`].
pub fn data_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

/// Starts a host on a folder made by [`new_dir`], with the default configuration
/// changed by `configure` (an admin token...).
pub async fn start_in(
    dir: Arc<TempDir>,
    configure: impl FnOnce(&mut tessera::Config),
) -> Result<TestHost> {
    TestHost::start_configured(dir, configure).await
}

/// Copies the write store of the (stopped) host whose data folder is `from` into the
/// data folder `to`: the log alone, no projection, lifecycle or plugin archive.
pub fn copy_log(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let name = path.file_name().context("file name")?.to_string_lossy();
        if path.is_file() && name.starts_with("events.db") {
            std::fs::copy(&path, to.join(&*name)).with_context(|| format!("copy {name}"))?;
        }
    }
    ensure!(to.join("events.db").exists(), "no events.db in {from:?}");
    Ok(())
}

/// The id of the `n`th account [`append_bank_log`] opens.
pub fn account_id(n: usize) -> String {
    format!("acc-{n:05}")
}

/// Appends, straight through the event store (no host), what the bank-account plugin
/// would have decided for `accounts` accounts each opened by `owner` and given
/// `deposits` deposits of 1..=deposits: `accounts * (1 + deposits)` events in all.
/// Returns the head.
pub async fn append_bank_log(
    data_dir: &Path,
    accounts: usize,
    deposits: usize,
    owner: &str,
) -> Result<u64> {
    let store = Arc::new(SqliteEventStore::open(
        &data_dir.join("events.db"),
        Durability::Normal,
    )?);
    let metadata = Metadata {
        command_id: "setup".into(),
        correlation_id: "setup".into(),
        causation_id: "setup".into(),
        principal: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
        request_id: None,
        claims: None,
    };
    let event = |event_type: &str, data: Value| NewEvent {
        event_type: event_type.to_string(),
        data: serde_json::value::to_raw_value(&data).expect("JSON"),
        metadata: metadata.clone(),
    };
    // Many appends in flight at once, so that the store commits them in large groups.
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut head = 0;
    for n in 0..accounts {
        let mut events = vec![event("AccountOpened", json!({ "owner": owner }))];
        events.extend((1..=deposits).map(|amount| event("Deposited", json!({ "amount": amount }))));
        let request = AppendRequest {
            stream: format!("account-{}", account_id(n)),
            expected_version: 0,
            events,
            idempotency: None,
        };
        let store = store.clone();
        in_flight.push(async move { store.append(request).await });
        if in_flight.len() >= 1024 {
            head = head.max(appended(&mut in_flight).await?);
        }
    }
    while !in_flight.is_empty() {
        head = head.max(appended(&mut in_flight).await?);
    }
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    Ok(head)
}

/// The position reached by the next append of `in_flight` to finish.
async fn appended<F>(in_flight: &mut futures::stream::FuturesUnordered<F>) -> Result<u64>
where
    F: Future<Output = Result<AppendOutcome, tessera::event_store::AppendError>>,
{
    use futures::StreamExt;
    match in_flight.next().await.context("an append in flight")?? {
        AppendOutcome::Appended(commit) => Ok(commit.position),
        AppendOutcome::AlreadyApplied(_) => anyhow::bail!("nothing was appended"),
    }
}

/// Sends `method` to `path` with an optional JSON body and bearer token.
pub async fn call(
    host: &TestHost,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<Reply> {
    let mut request = host.client.request(method, format!("{}{path}", host.url));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await?).await
}

/// `PUT /plugins/{name}` with the bytes of the plugin file `plugin`; asserts success.
pub async fn deploy(host: &TestHost, name: &str, plugin: &str) -> Reply {
    let bytes = std::fs::read(plugin).unwrap_or_else(|e| panic!("cannot read {plugin}: {e}"));
    let response = host
        .client
        .put(format!("{}/plugins/{name}", host.url))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("deploy sent");
    let reply = Reply::read(response).await.expect("deploy reply");
    assert!(
        (200..300).contains(&reply.status),
        "deploying {plugin} as {name} failed: {} {}",
        reply.status,
        reply.body
    );
    reply
}

/// `PUT /projections/{name}/policy` with `change`; asserts success, returns the policy.
pub async fn set_policy(host: &TestHost, name: &str, change: Value) -> Value {
    let reply = call(
        host,
        reqwest::Method::PUT,
        &format!("/projections/{name}/policy"),
        Some(&change),
        None,
    )
    .await
    .expect("policy request");
    reply.ok().clone()
}

/// Every projection version, from `GET /projections`.
pub async fn statuses(host: &TestHost) -> Result<Vec<Value>> {
    let (status, body) = host.get("/projections").await?;
    ensure!(status == 200, "GET /projections failed: {status} {body}");
    body["projections"]
        .as_array()
        .cloned()
        .context("projections list")
}

/// The newest generation of version `version` of projection `name` in `list`.
pub fn version_of<'a>(list: &'a [Value], name: &str, version: u64) -> Option<&'a Value> {
    list.iter()
        .filter(|p| p["name"] == name && p["version"] == version)
        .max_by_key(|p| p["generation"].as_u64())
}

/// The versions of projection `name` in `list`, oldest first.
pub fn versions_of(list: &[Value], name: &str) -> Vec<u64> {
    let mut versions: Vec<u64> = list
        .iter()
        .filter(|p| p["name"] == name)
        .filter_map(|p| p["version"].as_u64())
        .collect();
    versions.sort_unstable();
    versions
}

/// The write store's head, from `GET /health`.
pub async fn head(host: &TestHost) -> Result<u64> {
    let (status, body) = host.get("/health").await?;
    ensure!(status == 200, "GET /health failed: {status} {body}");
    body["head"].as_u64().context("head")
}

/// Waits until version `version` of `name` satisfies `test`; returns its status.
pub async fn wait_version(
    host: &TestHost,
    name: &str,
    version: u64,
    what: &str,
    test: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, async || {
        let list = statuses(host).await.map_err(|e| e.to_string())?;
        match version_of(&list, name, version) {
            Some(status) if test(status) => Ok(status.clone()),
            Some(status) => Err(status.to_string()),
            None => Err(format!("{name} v{version} is not listed: {list:?}")),
        }
    })
    .await
}

/// Waits until version `version` of `name` is live at the write head (no newer event
/// arrives meanwhile) with `role`; returns its status.
pub async fn wait_caught_up(host: &TestHost, name: &str, version: u64, role: &str) -> Value {
    wait_version(
        host,
        name,
        version,
        &format!("{name} v{version} {role} and live at the head"),
        |s| {
            s["role"] == role
                && s["status"] == "live"
                && s["lag_events"] == 0
                && s["checkpoint"] == s["head"]
        },
    )
    .await
}

/// `GET /queries/{name}?{query}`, at least as fresh as `position` if given.
pub async fn query(
    host: &TestHost,
    name: &str,
    query: &str,
    position: Option<u64>,
) -> Result<Reply> {
    let mut request = host
        .client
        .get(format!("{}/queries/{name}?{query}", host.url));
    if let Some(position) = position {
        request = request
            .header("tessera-min-position", position.to_string())
            .header("tessera-max-wait", "30000");
    }
    Reply::read(request.send().await?).await
}

/// Polls `probe` until it returns `Ok`, for at most [`WAIT`]; panics with `what` and
/// the last thing seen otherwise.
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > WAIT => {
                panic!("waited {WAIT:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
