//! Helpers for the read-side tests: what the bank's read models should hold, computed
//! from the log alone, and where a projection's database is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The projection named `name` in a `GET /projections` list.
pub fn projection<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["name"] == name)
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
