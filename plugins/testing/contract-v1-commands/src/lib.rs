//! Test plugin: the `tally-v1` command handler (aggregate type `tally-v1`; commands
//! `v1-add`, `v1-add-many`, `v1-probe`), a plugin of contract 0.1.0 written against
//! `wit/deps/tessera-plugin-0.1.0` with wit-bindgen, as plugins were before 0.2.0.
//! The host calls its `apply` once per event; its state counts those calls, which
//! `v1-probe` reports. The rules are the contract kit's, shared with `tally-v2`.

use test_contract_kit::{Refused, Tally};

use bindings::exports::tessera::plugin::aggregate::{Command, Guest, NewEvent};
use bindings::tessera::plugin::types::{
    CommandHandlerDetails, Event, FieldError, PluginDetails, PluginInfo, Refusal, Rejection,
};

// The export glue that wit-bindgen generates is `unsafe` (it defines the component's
// ABI entry points); it is confined to this module.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/deps/tessera-plugin-0.1.0",
        world: "command-handler",
    });

    use super::TallyV1;
    export!(TallyV1);
}

/// The prefix of this plugin's command names.
const PREFIX: &str = "v1-";

struct TallyV1;

impl Guest for TallyV1 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "tally-v1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handles: ["add", "add-many", "probe"]
                .map(|c| format!("{PREFIX}{c}"))
                .to_vec(),
            details: PluginDetails::CommandHandler(CommandHandlerDetails {
                aggregate_type: "tally-v1".into(),
            }),
        }
    }

    fn apply(state: Option<String>, event: Event) -> String {
        let mut tally = Tally::from_json(state.as_deref());
        tally.apply(&event.event_type, &event.data);
        tally.calls += 1;
        tally.to_json()
    }

    fn handle(state: Option<String>, command: Command) -> Result<Vec<NewEvent>, Refusal> {
        let tally = Tally::from_json(state.as_deref());
        let name = command.name.strip_prefix(PREFIX).unwrap_or(&command.name);
        match tally.decide(name, &command.payload) {
            Ok(events) => Ok(events
                .into_iter()
                .map(|(event_type, data)| NewEvent { event_type, data })
                .collect()),
            Err(Refused::Invalid { field, message }) => {
                Err(Refusal::Invalid(vec![FieldError { field, message }]))
            }
            Err(Refused::Rejected { code, message }) => {
                Err(Refusal::Rejected(Rejection { code, message }))
            }
        }
    }
}
