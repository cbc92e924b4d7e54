//! Test plugin: an inline projection (commands wait for it before answering) of the
//! events `test-sql-commands` appends with `sql-emit`: `InlineNote` is recorded,
//! `InlineSpin` runs an endless SQL statement, `InlineFail` returns an error. While it
//! is stuck, no command's response may wait for it much longer than its deadline.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};
use test_sql_kit as kit;

pub struct SqlInline;

#[derive(Debug, Deserialize)]
pub enum Event {
    InlineNote {},
    InlineSpin {},
    InlineFail {},
}

impl Projection for SqlInline {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Inline;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.execute(
            "CREATE TABLE notes (position INTEGER PRIMARY KEY)",
            params![],
        )?;
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        match envelope.event {
            Event::InlineNote {} => {
                db.execute(
                    "INSERT INTO notes (position) VALUES (?1)",
                    params![envelope.position],
                )?;
                Ok(())
            }
            Event::InlineSpin {} => {
                db.query(kit::ENDLESS, params![])?;
                Err("the endless statement ended".to_string())
            }
            Event::InlineFail {} => Err(format!(
                "the inline projection fails on request at {}",
                envelope.position
            )),
        }
    }
}

tessera_sdk::projection!(SqlInline);
