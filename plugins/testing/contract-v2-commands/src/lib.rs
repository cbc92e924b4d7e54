//! Test plugin: the `tally-v2` command handler (aggregate type `tally-v2`; commands
//! `v2-add`, `v2-add-many`, `v2-probe`), a plugin of contract 0.2.0. The host calls
//! its `fold` with every event a command needs at once; its state counts the calls,
//! which `v2-probe` reports (so a test sees that a stream of many events was folded
//! in one call). The rules are the contract kit's, shared with `tally-v1`. Written on
//! the SDK's 0.2.0 bindings rather than its `Aggregate`, which hides the calls.

use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    CommandHandlerDetails, Event, FieldError, PluginDetails, PluginInfo, Refusal, Rejection,
};
use test_contract_kit::{Refused, Tally};

/// The prefix of this plugin's command names.
const PREFIX: &str = "v2-";

struct TallyV2;

impl Guest for TallyV2 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "tally-v2".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handles: ["add", "add-many", "probe"]
                .map(|c| format!("{PREFIX}{c}"))
                .to_vec(),
            details: PluginDetails::CommandHandler(CommandHandlerDetails {
                aggregate_type: "tally-v2".into(),
            }),
        }
    }

    fn fold(state: Option<String>, events: Vec<Event>) -> String {
        let mut tally = Tally::from_json(state.as_deref());
        for event in &events {
            tally.apply(&event.event_type, &event.data);
        }
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

tessera_sdk::__bindings::command::export_command_handler!(TallyV2);
