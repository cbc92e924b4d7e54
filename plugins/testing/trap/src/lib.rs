//! Test plugin: a command handler that traps when asked to, and works otherwise,
//! so a test can show that one trapped call leaves the host serving the next.

use serde::{Deserialize, Serialize};
use tessera_sdk::{Aggregate, Metadata, Refusal};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Fuse {
    pings: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Panics inside the guest, which aborts: a trap as the host sees it.
    Explode {},
    Ping {},
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    Pinged,
}

impl Aggregate for Fuse {
    const AGGREGATE_TYPE: &'static str = "fuse";
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: Event) {
        match event {
            Event::Pinged => self.pings += 1,
        }
    }

    fn handle(&self, command: Command, _metadata: &Metadata) -> Result<Vec<Event>, Refusal> {
        match command {
            Command::Explode {} => panic!("the fuse was lit"),
            Command::Ping {} => Ok(vec![Event::Pinged]),
        }
    }
}

tessera_sdk::command_handler!(Fuse);
