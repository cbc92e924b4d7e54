//! Test plugin: an async projection of the events `test-rogue-commands` appends with
//! `feed-projection`. `ProjectionNote` is applied honestly (one row in `notes`);
//! `ProjectionSpin` loops forever, `ProjectionPanic` traps and `ProjectionGrow` grows
//! memory without end, all inside `apply`.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};
use test_rogue_kit as kit;

pub struct RogueProjection;

#[derive(Debug, Deserialize)]
pub enum Event {
    ProjectionNote {},
    ProjectionSpin {},
    ProjectionPanic {},
    ProjectionGrow {},
}

impl Projection for RogueProjection {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
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
            Event::ProjectionNote {} => {
                db.execute(
                    "INSERT INTO notes (position) VALUES (?1)",
                    params![envelope.position],
                )?;
                Ok(())
            }
            Event::ProjectionSpin {} => kit::spin_forever(),
            Event::ProjectionPanic {} => panic!("the rogue projection panics on request"),
            Event::ProjectionGrow {} => kit::grow_forever(),
        }
    }
}

tessera_sdk::projection!(RogueProjection);
