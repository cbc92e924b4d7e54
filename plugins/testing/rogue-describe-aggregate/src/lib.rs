//! Test plugin: a command handler whose aggregate type is `Account/../../etc` (upper
//! case, slashes, dots): it would make stream names of anything. The host must refuse
//! it.
//!
//! Written against the raw bindings: the SDK's macros always describe honestly.

use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    CommandHandlerDetails, Event, PluginDetails, PluginInfo, Refusal,
};

struct Rogue;

impl Guest for Rogue {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "test-rogue-describe-aggregate".to_string(),
            version: "0.1.0".to_string(),
            handles: vec!["rogue-aggregate-cmd".to_string()],
            details: PluginDetails::CommandHandler(CommandHandlerDetails {
                aggregate_type: "Account/../../etc".to_string(),
            }),
        }
    }

    fn fold(state: Option<String>, _events: Vec<Event>) -> String {
        state.unwrap_or_else(|| "{}".to_string())
    }

    fn handle(_state: Option<String>, command: Command) -> Result<Vec<NewEvent>, Refusal> {
        Ok(vec![NewEvent {
            event_type: "Handled".to_string(),
            data: format!("{{\"command\":{:?}}}", command.name),
        }])
    }
}

tessera_sdk::__bindings::command::export_command_handler!(Rogue);
