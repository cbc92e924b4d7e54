//! Test plugin: an async projection whose `setup` runs an endless SQL statement, so
//! it never gets past setting up. It consumes `SqlNote` (which it would record, had
//! it a table) only so that it has an event to catch up on: deployed on a long log,
//! it is behind and must take catch-up turns, which it must not hold for ever.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};
use test_sql_kit as kit;

pub struct SqlSetupSpin;

#[derive(Debug, Deserialize)]
pub enum Event {
    SqlNote {},
}

impl Projection for SqlSetupSpin {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.query(kit::ENDLESS, params![])?;
        db.execute(
            "CREATE TABLE notes (position INTEGER PRIMARY KEY)",
            params![],
        )?;
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let Event::SqlNote {} = envelope.event;
        db.execute(
            "INSERT INTO notes (position) VALUES (?1)",
            params![envelope.position],
        )?;
        Ok(())
    }
}

tessera_sdk::projection!(SqlSetupSpin);
