//! Test plugin: a command handler that claims `ghost-command` and `ghost-other` but
//! handles neither: its `handle` traps on every command. The host cannot tell from the
//! description; it must load it, and contain the trap when the command comes.
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
            name: "test-rogue-describe-ghost".to_string(),
            version: "0.1.0".to_string(),
            handles: vec!["ghost-command".to_string(), "ghost-other".to_string()],
            details: PluginDetails::CommandHandler(CommandHandlerDetails {
                aggregate_type: "rogue-describe".to_string(),
            }),
        }
    }

    fn fold(state: Option<String>, _events: Vec<Event>) -> String {
        state.unwrap_or_else(|| "{}".to_string())
    }

    fn handle(_state: Option<String>, command: Command) -> Result<Vec<NewEvent>, Refusal> {
        panic!("{} was claimed, never handled", command.name)
    }
}

tessera_sdk::__bindings::command::export_command_handler!(Rogue);
