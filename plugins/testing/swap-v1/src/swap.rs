//! The `swap` command handler, shared by `test-swap-v1` and `test-swap-v2`: the two
//! crates differ only in [`CODE`](super::CODE) and the version they report.
//!
//! Every event a command produces carries the code that decided it, and the code that
//! folded the state it decided on, so a test can tell from one response whether it
//! was answered wholly by one version: a response mixing versions (say, v2 deciding
//! on a state folded by v1) shows two different codes.

use serde::{Deserialize, Serialize};
use tessera_sdk::{Aggregate, Metadata, Refusal};

use super::CODE;

#[derive(Debug, Serialize, Deserialize)]
pub struct Swap {
    /// The code that folded this state; each version stamps its own.
    folded_by: String,
    /// The `swap-ping` commands so far.
    pings: u64,
}

impl Default for Swap {
    fn default() -> Self {
        Swap {
            folded_by: CODE.to_string(),
            pings: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Appends `SwapPinged` then `SwapAnswered`.
    SwapPing {},
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    /// `code` decided; `state_code` folded the state; `pings` counts this one.
    SwapPinged {
        code: String,
        state_code: String,
        pings: u64,
    },
    SwapAnswered {
        code: String,
    },
}

impl Aggregate for Swap {
    const AGGREGATE_TYPE: &'static str = "swap";
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: Event) {
        self.folded_by = CODE.to_string();
        if let Event::SwapPinged { .. } = event {
            self.pings += 1;
        }
    }

    fn handle(&self, command: Command, _metadata: &Metadata) -> Result<Vec<Event>, Refusal> {
        match command {
            Command::SwapPing {} => Ok(vec![
                Event::SwapPinged {
                    code: CODE.to_string(),
                    state_code: self.folded_by.clone(),
                    pings: self.pings + 1,
                },
                Event::SwapAnswered {
                    code: CODE.to_string(),
                },
            ]),
        }
    }
}
