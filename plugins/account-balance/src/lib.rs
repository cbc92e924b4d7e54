//! Example projection: each account's owner, balance and version.
//!
//! Besides the current row per account it keeps each account's balance history
//! (`from_position`..`to_position`), so that the `accounts` query can page through
//! all accounts as of one log position: a walk sees every account exactly once even
//! while deposits reorder them.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};

pub struct AccountBalance;

#[derive(Debug, Deserialize)]
pub enum Event {
    AccountOpened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Projection for AccountBalance {
    const SCHEMA_VERSION: u32 = 1;
    // Inline: a command's response waits for this read model, so a client reads its
    // own writes without asking.
    const MODE: Mode = Mode::Inline;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.execute(
            "CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                balance INTEGER NOT NULL,
                version INTEGER NOT NULL,
                updated_at TEXT NOT NULL
            )",
            params![],
        )?;
        // Clustered on its primary key (`WITHOUT ROWID`): a row lives in one b-tree, not
        // in a table and a separate key index.
        db.execute(
            "CREATE TABLE balance_history (
                id TEXT NOT NULL,
                balance INTEGER NOT NULL,
                from_position INTEGER NOT NULL,
                to_position INTEGER,
                PRIMARY KEY (id, from_position)
            ) WITHOUT ROWID",
            params![],
        )?;
        db.execute(
            "CREATE INDEX balance_history_order ON balance_history (balance DESC, id)",
            params![],
        )?;
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let id = envelope
            .stream
            .strip_prefix("account-")
            .unwrap_or(&envelope.stream)
            .to_string();
        let delta: i64 = match envelope.event {
            Event::AccountOpened { owner } => {
                db.execute(
                    "INSERT INTO accounts (id, owner, balance, version, updated_at)
                     VALUES (?1, ?2, 0, ?3, ?4)",
                    params![&id, owner, envelope.version, &envelope.timestamp],
                )?;
                db.execute(
                    "INSERT INTO balance_history (id, balance, from_position) VALUES (?1, 0, ?2)",
                    params![&id, envelope.position],
                )?;
                return Ok(());
            }
            Event::Deposited { amount } => amount as i64,
            Event::Withdrawn { amount } => -(amount as i64),
        };
        db.execute(
            "UPDATE accounts SET balance = balance + ?2, version = ?3, updated_at = ?4
             WHERE id = ?1",
            params![&id, delta, envelope.version, &envelope.timestamp],
        )?;
        // The open history row is the account's latest: found by a seek on the primary
        // key, where `to_position IS NULL` would scan all of the account's rows.
        db.execute(
            "UPDATE balance_history SET to_position = ?2
             WHERE id = ?1 AND from_position =
                 (SELECT MAX(from_position) FROM balance_history WHERE id = ?1)",
            params![&id, envelope.position],
        )?;
        db.execute(
            "INSERT INTO balance_history (id, balance, from_position)
             SELECT id, balance, ?2 FROM accounts WHERE id = ?1",
            params![&id, envelope.position],
        )?;
        Ok(())
    }
}

tessera_sdk::projection!(AccountBalance);
