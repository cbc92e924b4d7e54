//! Test plugin: an async projection of the events `test-sql-commands` appends with
//! `sql-emit`. `SqlNote` is applied honestly: a row in `notes` (once per position)
//! and one more on `counter`, which is not idempotent, so an event applied twice
//! shows. Every other event runs hostile SQL inside `apply`:
//!
//! - `SqlSpin`: an endless statement, its error returned; `SqlSpinRetry`: the same,
//!   started again whenever it fails, for ever.
//! - `SqlSlow {n}`: a statement that ends after counting to `n`.
//! - `SqlMemory {what, quiet, then_note}`: one of `test_sql_kit::MEMORY`.
//! - `FillDisk {mb, quiet, then_note}`: inserts `mb` MiB, 1 MiB per statement.
//!
//! For those two, the first error is returned; or, if `quiet`, swallowed, as a
//! projection that hides its failures would, and `apply` succeeds (with what fitted);
//! with `then_note` it then goes on to record a note as `SqlNote` does. SQLite may
//! have rolled the whole batch back on such an error (a full database, memory
//! exhausted): what the guest does next must still commit with the checkpoint, or not
//! at all.
//! - `TempTrick {}`: every statement of `test_sql_kit::TEMP_TRICKS`, each outcome
//!   (`denied: <error>` or `allowed`) recorded in `attempts`; it succeeds whatever
//!   happened, and leaves whatever it managed to create in place.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};
use test_sql_kit as kit;

pub struct SqlProjection;

#[derive(Debug, Deserialize)]
pub enum Event {
    SqlNote {},
    SqlSpin {},
    SqlSpinRetry {},
    SqlSlow {
        n: Option<i64>,
    },
    SqlMemory {
        what: String,
        #[serde(default)]
        quiet: bool,
        #[serde(default)]
        then_note: bool,
    },
    FillDisk {
        mb: u64,
        #[serde(default)]
        quiet: bool,
        #[serde(default)]
        then_note: bool,
    },
    TempTrick {},
}

impl Projection for SqlProjection {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        for sql in [
            "CREATE TABLE notes (position INTEGER PRIMARY KEY)",
            "CREATE TABLE counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
            "INSERT INTO counter (id, n) VALUES (1, 0)",
            "CREATE TABLE attempts (
                seq INTEGER PRIMARY KEY,
                position INTEGER NOT NULL,
                what TEXT NOT NULL,
                outcome TEXT NOT NULL
            )",
            "CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        ] {
            db.execute(sql, params![])?;
        }
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let position = envelope.position;
        match envelope.event {
            Event::SqlNote {} => note(db, position),
            Event::SqlSpin {} => {
                db.query(kit::ENDLESS, params![])?;
                Err("the endless statement ended".to_string())
            }
            Event::SqlSpinRetry {} => loop {
                let _ = db.query(kit::ENDLESS, params![]);
            },
            Event::SqlSlow { n } => {
                db.query(kit::SLOW, params![n.unwrap_or(kit::SLOW_DEFAULT)])?;
                Ok(())
            }
            Event::SqlMemory {
                what,
                quiet,
                then_note,
            } => {
                let sql = kit::memory(&what).ok_or_else(|| format!("unknown: {what}"))?;
                let result = db.query(sql, params![]).map(drop);
                after(db, position, result, quiet, then_note)
            }
            Event::FillDisk {
                mb,
                quiet,
                then_note,
            } => {
                let mut result = Ok(());
                for _ in 0..mb {
                    if let Err(error) = db.execute(kit::FILL_ONE_MIB, params![]) {
                        result = Err(error);
                        break;
                    }
                }
                after(db, position, result, quiet, then_note)
            }
            Event::TempTrick {} => {
                for sql in kit::TEMP_TRICKS {
                    let outcome = match db.execute(sql, params![]) {
                        Ok(_) => "allowed".to_string(),
                        Err(error) => format!("denied: {error}"),
                    };
                    db.execute(
                        "INSERT INTO attempts (position, what, outcome) VALUES (?1, ?2, ?3)",
                        params![position, *sql, outcome],
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// What `SqlNote` does: a row in `notes` (once per position), one more on `counter`.
fn note(db: &Db, position: u64) -> Result<(), String> {
    db.execute(
        "INSERT OR IGNORE INTO notes (position) VALUES (?1)",
        params![position],
    )?;
    db.execute("UPDATE counter SET n = n + 1 WHERE id = 1", params![])?;
    Ok(())
}

/// After a hostile statement: its error returned, or swallowed (`quiet`), and then a
/// note recorded (`then_note`).
fn after(
    db: &Db,
    position: u64,
    result: Result<(), String>,
    quiet: bool,
    then_note: bool,
) -> Result<(), String> {
    match result {
        Err(error) if !quiet => Err(error),
        _ if then_note => note(db, position),
        _ => Ok(()),
    }
}

tessera_sdk::projection!(SqlProjection);
