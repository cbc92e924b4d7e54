//! The projection named `poison`, shared by `test-poison-projection` (whose [`FIXED`]
//! is false) and `test-poison-projection-fixed`.
//!
//! It records the owner of every account opened, in log order, in `owners`. Unless
//! fixed, it fails on an account opened for the owner `"poison"`: the poison event that
//! tests halt or park on. Both builds share schema version 1, so deploying the fixed one
//! replaces the code of the running version, which continues from its checkpoint.

use serde::Deserialize;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};

use crate::FIXED;

/// The owner whose account opening the unfixed code cannot apply.
pub const POISON: &str = "poison";

pub struct Poison;

#[derive(Debug, Deserialize)]
pub enum Event {
    AccountOpened { owner: String },
}

impl Projection for Poison {
    const SCHEMA_VERSION: u32 = 1;
    // In the background: commands never wait for it, halted or not.
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.execute(
            "CREATE TABLE owners (
                position INTEGER PRIMARY KEY,
                stream TEXT NOT NULL,
                owner TEXT NOT NULL
            )",
            params![],
        )?;
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let Event::AccountOpened { owner } = envelope.event;
        if owner == POISON && !FIXED {
            return Err(format!(
                "cannot apply event {}: the owner {POISON:?} is poison",
                envelope.position
            ));
        }
        db.execute(
            "INSERT INTO owners (position, stream, owner) VALUES (?1, ?2, ?3)",
            params![envelope.position, &envelope.stream, owner],
        )?;
        Ok(())
    }
}
