//! Test plugin: a command handler whose `describe` traps, so the host cannot learn
//! what it is. Written against the raw bindings, since the SDK's macro always
//! describes successfully. The host must refuse it at load time.

use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{Event, PluginInfo, Refusal};

struct DescribeTrap;

impl Guest for DescribeTrap {
    fn describe() -> PluginInfo {
        panic!("describe fails on purpose")
    }

    fn fold(state: Option<String>, _events: Vec<Event>) -> String {
        state.unwrap_or_else(|| "{}".to_string())
    }

    fn handle(_state: Option<String>, _command: Command) -> Result<Vec<NewEvent>, Refusal> {
        Ok(Vec::new())
    }
}

tessera_sdk::__bindings::command::export_command_handler!(DescribeTrap);
