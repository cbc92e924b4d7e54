//! Test plugin: the `tally-totals-v2` projection, a plugin of contract 0.2.0 on the
//! SDK's `Projection`. It records each stream's total from `Added` events (of
//! `tally-v1` and `tally-v2` alike) and counts the `apply-batch` calls that did it
//! (in the batch's transaction, so a batch rolled back is not counted); it fails on an
//! amount of 13 and traps on 666. The SQL is the contract kit's, shared with
//! `tally-totals-v1`.

use serde::Deserialize;
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    Event as WitEvent, PluginInfo,
};
use tessera_sdk::__bindings::projection::exports::tessera::plugin0_2_0::projector::{
    BatchFailure, Guest,
};
use tessera_sdk::__private::projection::{apply_batch, describe, setup};
use tessera_sdk::{Db, Envelope, Mode, Projection, params};
use test_contract_kit as kit;

pub struct TotalsV2;

#[derive(Debug, Deserialize)]
pub enum Event {
    Added { amount: u64 },
}

impl Projection for TotalsV2 {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        for statement in kit::SETUP {
            db.execute(statement, params![])?;
        }
        Ok(())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let Event::Added { amount } = envelope.event;
        let amount = kit::check_amount(envelope.position, amount)?;
        db.execute(
            kit::RECORD,
            params![&envelope.stream, amount as i64, envelope.position as i64],
        )?;
        Ok(())
    }
}

/// The SDK's exports, with each `apply-batch` call counted.
struct Exports;

impl Guest for Exports {
    fn describe() -> PluginInfo {
        describe::<TotalsV2>("tally-totals-v2", env!("CARGO_PKG_VERSION"))
    }

    fn setup() -> Result<(), String> {
        setup::<TotalsV2>()
    }

    fn apply_batch(events: Vec<WitEvent>) -> Result<(), BatchFailure> {
        Db.execute(kit::COUNT_CALL, params![])
            .map_err(|message| BatchFailure { index: 0, message })?;
        apply_batch::<TotalsV2>(events)
    }
}

tessera_sdk::__bindings::projection::export_projection!(Exports);
