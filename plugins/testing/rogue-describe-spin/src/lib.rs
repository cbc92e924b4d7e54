//! Test plugin: a command handler whose `describe` loops forever. The host must cut it
//! at the describe deadline and not load the plugin.
//!
//! Written against the raw bindings: the SDK's macros always describe honestly.

use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{Event, PluginInfo, Refusal};

struct Rogue;

impl Guest for Rogue {
    fn describe() -> PluginInfo {
        test_rogue_kit::spin_forever()
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
