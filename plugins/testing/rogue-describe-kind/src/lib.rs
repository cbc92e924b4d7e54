//! Test plugin: a component of the command-handler world whose `describe` claims to be
//! a projection. The host must see through it and not load the plugin.
//!
//! Written against the raw bindings: the SDK's macros always describe honestly.

use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    Event, PluginDetails, PluginInfo, ProjectionDetails, ProjectionMode, Refusal,
};

struct Rogue;

impl Guest for Rogue {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "test-rogue-describe-kind".to_string(),
            version: "0.1.0".to_string(),
            handles: vec!["AccountOpened".to_string()],
            details: PluginDetails::Projection(ProjectionDetails {
                schema_version: 1,
                mode: ProjectionMode::Inline,
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
