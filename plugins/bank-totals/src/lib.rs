//! Example projection: a denormalized view across all accounts: how many are open,
//! the sum of their balances, and the deposits and withdrawals of each day.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};

pub struct BankTotals;

#[derive(Debug, Deserialize)]
pub enum Event {
    AccountOpened {},
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Projection for BankTotals {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.execute(
            "CREATE TABLE totals (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                open_accounts INTEGER NOT NULL,
                total_balance INTEGER NOT NULL
            )",
            params![],
        )?;
        db.execute(
            "INSERT INTO totals (id, open_accounts, total_balance) VALUES (1, 0, 0)",
            params![],
        )?;
        db.execute(
            "CREATE TABLE daily (
                day TEXT PRIMARY KEY,
                deposits INTEGER NOT NULL DEFAULT 0,
                deposit_count INTEGER NOT NULL DEFAULT 0,
                withdrawals INTEGER NOT NULL DEFAULT 0,
                withdrawal_count INTEGER NOT NULL DEFAULT 0
            )",
            params![],
        )?;
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        // The day is the UTC date of the event's timestamp (RFC 3339).
        let day = envelope
            .timestamp
            .get(..10)
            .unwrap_or("unknown")
            .to_string();
        match envelope.event {
            Event::AccountOpened {} => {
                db.execute(
                    "UPDATE totals SET open_accounts = open_accounts + 1 WHERE id = 1",
                    params![],
                )?;
            }
            Event::Deposited { amount } => {
                db.execute(
                    "UPDATE totals SET total_balance = total_balance + ?1 WHERE id = 1",
                    params![amount],
                )?;
                db.execute(
                    "INSERT INTO daily (day, deposits, deposit_count) VALUES (?1, ?2, 1)
                     ON CONFLICT (day) DO UPDATE SET
                         deposits = deposits + excluded.deposits,
                         deposit_count = deposit_count + 1",
                    params![day, amount],
                )?;
            }
            Event::Withdrawn { amount } => {
                db.execute(
                    "UPDATE totals SET total_balance = total_balance - ?1 WHERE id = 1",
                    params![amount],
                )?;
                db.execute(
                    "INSERT INTO daily (day, withdrawals, withdrawal_count) VALUES (?1, ?2, 1)
                     ON CONFLICT (day) DO UPDATE SET
                         withdrawals = withdrawals + excluded.withdrawals,
                         withdrawal_count = withdrawal_count + 1",
                    params![day, amount],
                )?;
            }
        }
        Ok(())
    }
}

tessera_sdk::projection!(BankTotals);
