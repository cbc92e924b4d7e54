//! Test plugin: a command handler (aggregate type `rogue`) with one command per
//! misbehaviour, and `ping`, which behaves, so a test can show the plugin itself still
//! serves after each.
//!
//! - `spin`: loops forever in `handle`; `spin-for {ms}`: busy-waits `ms` of wall clock
//!   and succeeds (slow but finite, for per-plugin deadlines).
//! - `grow`: grows memory without end; `allocate {mb}`: uses `mb` MiB and succeeds
//!   (for per-plugin memory bounds).
//! - `panic`: traps in `handle`; `overflow`: exhausts the stack; `arm`: appends an
//!   `Armed` event whose fold traps, so every later command on that stream traps
//!   while folding it.
//! - `huge-event {mb}`: one event whose data is a JSON string of `mb` MiB;
//!   `many-events {count}`: `count` small events.
//! - `bad-json`: an event whose data is not JSON; `empty-type`: an event with an empty
//!   type; `long-type`: an event type of 200 characters.
//! - `feed-projection {what}`: an event for `test-rogue-projection` (`spin`, `panic`,
//!   `grow` or `note`).
//! - `probe {ports}`: tries files, environment and network; the `Probed` event's
//!   `report` says what each attempt got.
//! - `say {text}`: behaves, and logs `text` through the host's log (for tests of what
//!   the host adds to a plugin's log lines).
//! - `count {}`: behaves; its `Counted` event says how many `count` commands this
//!   instance has handled, itself included (a global survives while the host reuses
//!   the instance, so tests can see reuse).
//!
//! The size-sensitive commands are handled before the SDK sees them, so that the guest
//! holds a huge output once rather than in several copies; everything else goes
//! through the SDK as in any plugin.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command as WitCommand, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    Event as WitEvent, PluginInfo, Refusal as WitRefusal,
};
use tessera_sdk::__private::{describe, fold, handle};
use tessera_sdk::{Aggregate, Metadata, Refusal};
use test_rogue_kit as kit;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Rogue {
    pings: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    Ping {},
    Spin {},
    SpinFor { ms: u64 },
    Grow {},
    Allocate { mb: u64 },
    Panic {},
    Overflow {},
    Arm {},
    HugeEvent { mb: u64 },
    ManyEvents { count: u64 },
    BadJson {},
    EmptyType {},
    LongType {},
    FeedProjection { what: String },
    Probe { ports: Vec<u16> },
    Say { text: String },
    Count {},
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    Pinged,
    SpunFor { ms: u64, turns: u64 },
    Allocated { bytes: u64 },
    Armed,
    Tick { n: u64 },
    ProjectionSpin {},
    ProjectionPanic {},
    ProjectionGrow {},
    ProjectionNote {},
    Probed { report: Value },
    Counted { calls: u64 },
}

impl Aggregate for Rogue {
    const AGGREGATE_TYPE: &'static str = "rogue";
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: Event) {
        match event {
            Event::Pinged => self.pings += 1,
            Event::Armed => panic!("an armed stream cannot be folded"),
            _ => {}
        }
    }

    fn handle(&self, command: Command, _metadata: &Metadata) -> Result<Vec<Event>, Refusal> {
        match command {
            Command::Ping {} => Ok(vec![Event::Pinged]),
            Command::Count {} => {
                static COUNTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let calls = COUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(vec![Event::Counted { calls }])
            }
            Command::Say { text } => {
                tessera_sdk::log::warn(&text);
                Ok(vec![Event::Pinged])
            }
            Command::Spin {} => kit::spin_forever(),
            Command::SpinFor { ms } => Ok(vec![Event::SpunFor {
                ms,
                turns: kit::spin_for(ms),
            }]),
            Command::Grow {} => kit::grow_forever(),
            Command::Allocate { mb } => Ok(vec![Event::Allocated {
                bytes: kit::allocate(mb),
            }]),
            Command::Panic {} => panic!("the rogue panics on request"),
            Command::Overflow {} => Ok(vec![Event::Tick {
                n: kit::overflow_stack(0),
            }]),
            Command::Arm {} => Ok(vec![Event::Armed]),
            Command::ManyEvents { count } => Ok((0..count).map(|n| Event::Tick { n }).collect()),
            Command::FeedProjection { what } => Ok(vec![match what.as_str() {
                "spin" => Event::ProjectionSpin {},
                "panic" => Event::ProjectionPanic {},
                "grow" => Event::ProjectionGrow {},
                "note" => Event::ProjectionNote {},
                other => return Err(Refusal::invalid("what", format!("unknown: {other}"))),
            }]),
            Command::Probe { ports } => Ok(vec![Event::Probed {
                report: kit::probe(&ports),
            }]),
            // Handled before the SDK (see `Guest::handle` below).
            Command::HugeEvent { .. }
            | Command::BadJson {}
            | Command::EmptyType {}
            | Command::LongType {} => Err(Refusal::rejected("unreachable", "handled earlier")),
        }
    }
}

struct Exports;

impl Guest for Exports {
    fn describe() -> PluginInfo {
        describe::<Rogue>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn fold(state: Option<String>, events: Vec<WitEvent>) -> String {
        // A huge event is not parsed: the guest would need several copies of it.
        let events: Vec<WitEvent> = events
            .into_iter()
            .filter(|event| event.event_type != "Huge")
            .collect();
        if events.is_empty() {
            return state.unwrap_or_else(|| "{\"pings\":0}".to_string());
        }
        fold::<Rogue>(state, events)
    }

    fn handle(state: Option<String>, command: WitCommand) -> Result<Vec<NewEvent>, WitRefusal> {
        let raw = |event_type: &str, data: String| {
            Ok(vec![NewEvent {
                event_type: event_type.to_string(),
                data,
            }])
        };
        match command.name.as_str() {
            "huge-event" => {
                let payload: Map<String, Value> =
                    serde_json::from_str(&command.payload).unwrap_or_default();
                let mb = payload.get("mb").and_then(Value::as_u64).unwrap_or(1);
                raw("Huge", kit::huge_json_string((mb as usize) << 20))
            }
            "bad-json" => raw("Bad", "{this is not json".to_string()),
            "empty-type" => raw("", "{}".to_string()),
            "long-type" => raw(&"T".repeat(200), "{}".to_string()),
            _ => handle::<Rogue>(state, command),
        }
    }
}

tessera_sdk::__bindings::command::export_command_handler!(Exports);
