//! Test plugin: a command handler named `swap-rival` that handles `swap-ping`, the
//! command the `swap` plugins handle. Deploying it next to a served `swap` must not
//! take the command away from `swap`.

use serde::{Deserialize, Serialize};
use tessera_sdk::{Aggregate, Metadata, Refusal};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Rival {}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    SwapPing {},
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    RivalAnswered { code: String },
}

impl Aggregate for Rival {
    const AGGREGATE_TYPE: &'static str = "rival";
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, _event: Event) {}

    fn handle(&self, command: Command, _metadata: &Metadata) -> Result<Vec<Event>, Refusal> {
        match command {
            Command::SwapPing {} => Ok(vec![Event::RivalAnswered {
                code: "rival".to_string(),
            }]),
        }
    }
}

tessera_sdk::command_handler!(Rival, name = "swap-rival");
