//! Helpers for the projection lifecycle tests: data folders prepared for a host (a copy
//! of another host's log, a log appended straight through the event store) and the
//! status of one projection version.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tessera::event_store::{
    AppendOutcome, AppendRequest, Durability, EventStore, Metadata, NewEvent, SqliteEventStore,
};

use super::{Api, eventually};

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
    append_accounts(data_dir, &vec![owner.to_string(); accounts], deposits).await
}

/// As [`append_bank_log`], with account `n` opened by `owners[n]`.
pub async fn append_accounts(data_dir: &Path, owners: &[String], deposits: usize) -> Result<u64> {
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
    for (n, owner) in owners.iter().enumerate() {
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

/// Waits until version `version` of `name` satisfies `test`; returns its status.
pub async fn wait_version(
    host: &Api,
    name: &str,
    version: u64,
    what: &str,
    test: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, async || {
        let list = host.projections().await.map_err(|e| e.to_string())?;
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
pub async fn wait_caught_up(host: &Api, name: &str, version: u64, role: &str) -> Value {
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
