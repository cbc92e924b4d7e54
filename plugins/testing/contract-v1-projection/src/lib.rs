//! Test plugin: the `tally-totals-v1` projection, a plugin of contract 0.1.0 written
//! against `wit/deps/tessera-plugin-0.1.0` with wit-bindgen. It records each stream's
//! total from `Added` events (of `tally-v1` and `tally-v2` alike) and counts the
//! `apply` calls that did it; it fails on an amount of 13 and traps on 666. The SQL is
//! the contract kit's, shared with `tally-totals-v2`.

use bindings::exports::tessera::plugin::projector::Guest;
use bindings::tessera::plugin::projection_store::execute;
use bindings::tessera::plugin::sql_types::Value;
use bindings::tessera::plugin::types::{
    Event, PluginDetails, PluginInfo, ProjectionDetails, ProjectionMode,
};
use test_contract_kit as kit;

// The export glue that wit-bindgen generates is `unsafe`; it is confined here.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/deps/tessera-plugin-0.1.0",
        world: "projection",
    });

    use super::TotalsV1;
    export!(TotalsV1);
}

struct TotalsV1;

impl Guest for TotalsV1 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "tally-totals-v1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handles: vec!["Added".into()],
            details: PluginDetails::Projection(ProjectionDetails {
                schema_version: 1,
                mode: ProjectionMode::Async,
            }),
        }
    }

    fn setup() -> Result<(), String> {
        for statement in kit::SETUP {
            execute(statement, &[])?;
        }
        Ok(())
    }

    fn apply(event: Event) -> Result<(), String> {
        let amount = kit::projected_amount(event.position, &event.data)?;
        execute(
            kit::RECORD,
            &[
                Value::Text(event.stream),
                Value::Integer(amount as i64),
                Value::Integer(event.position as i64),
            ],
        )?;
        execute(kit::COUNT_CALL, &[])?;
        Ok(())
    }
}
