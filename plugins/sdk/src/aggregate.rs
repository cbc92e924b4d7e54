//! Command handlers as event-sourced aggregates, and the glue that exports them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::__bindings::command::exports::tessera::plugin0_2_0::aggregate as wit_aggregate;
use crate::__bindings::command::tessera::plugin0_2_0::types as wit;
use crate::Refusal;
use crate::variants::variant_names;

/// Who sent a command and why; the host copies it onto the events the command produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// The caller's identity, if the host knows it.
    pub principal: Option<String>,
    /// When the host accepted the command, RFC 3339 in UTC.
    pub timestamp: String,
}

impl From<wit::Metadata> for Metadata {
    fn from(m: wit::Metadata) -> Self {
        Metadata {
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
            principal: m.principal,
            timestamp: m.timestamp,
        }
    }
}

/// An event-sourced aggregate: the state of one stream, rebuilt by folding its events.
///
/// The state is kept by the host between commands as JSON, so it must round-trip
/// through serde. `Default` is the state before the first event.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// The aggregate type; a command for aggregate id `x` works on stream `<type>-x`.
    const AGGREGATE_TYPE: &'static str;

    /// The commands, as an enum whose variant names (after serde renames) are the
    /// command names and whose fields are the payload.
    type Command: DeserializeOwned;

    /// The events, as an enum whose variant names are the event types.
    type Event: Serialize + DeserializeOwned;

    /// Folds one event into the state. Must not fail: the event already happened.
    fn apply(&mut self, event: Self::Event);

    /// Decides what a command means: the events to append, or a refusal.
    fn handle(
        &self,
        command: Self::Command,
        metadata: &Metadata,
    ) -> Result<Vec<Self::Event>, Refusal>;
}

pub fn describe<A: Aggregate>(name: &str, version: &str) -> wit::PluginInfo {
    wit::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        handles: variant_names::<A::Command>()
            .iter()
            .map(|name| name.to_string())
            .collect(),
        details: wit::PluginDetails::CommandHandler(wit::CommandHandlerDetails {
            aggregate_type: A::AGGREGATE_TYPE.to_string(),
        }),
    }
}

fn load<A: Aggregate>(state: Option<String>) -> A {
    match state {
        None => A::default(),
        // The host only hands back what `fold` returned, so a state that does not
        // parse is a bug in this plugin: trap rather than guess.
        Some(json) => serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("aggregate state does not deserialize: {e}")),
    }
}

/// Folds `events` into `state` in one go: the state is deserialized once, each event
/// applied in order with [`Aggregate::apply`], and the result serialized once.
pub fn fold<A: Aggregate>(state: Option<String>, events: Vec<wit::Event>) -> String {
    let mut aggregate = load::<A>(state);
    for event in events {
        aggregate.apply(typed_event::<A>(event));
    }
    serde_json::to_string(&aggregate).expect("aggregate state serializes to JSON")
}

/// An event as the aggregate's own type. The host only hands over events this
/// aggregate decided on, so one that does not deserialize is a bug: trap.
fn typed_event<A: Aggregate>(event: wit::Event) -> A::Event {
    let data: Value = serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("event {} carries invalid JSON: {e}", event.position));
    let mut tagged = Map::new();
    tagged.insert(event.event_type.clone(), data);
    serde_json::from_value(Value::Object(tagged)).unwrap_or_else(|e| {
        panic!(
            "event {} of type {} does not deserialize: {e}",
            event.position, event.event_type
        )
    })
}

pub fn handle<A: Aggregate>(
    state: Option<String>,
    command: wit_aggregate::Command,
) -> Result<Vec<wit_aggregate::NewEvent>, wit::Refusal> {
    let aggregate = load::<A>(state);
    let payload: Value = serde_json::from_str(&command.payload)
        .map_err(|e| Refusal::invalid("payload", format!("not JSON: {e}")))?;
    let tagged = Value::Object(Map::from_iter([(command.name, payload)]));
    // The first path segment is the command name itself; fields start below it.
    let typed: A::Command =
        serde_path_to_error::deserialize(tagged).map_err(|e| Refusal::from_serde(e, 1))?;
    let events = aggregate.handle(typed, &command.metadata.into())?;
    Ok(events.iter().map(to_new_event).collect())
}

fn to_new_event<E: Serialize>(event: &E) -> wit_aggregate::NewEvent {
    let (event_type, data) = match serde_json::to_value(event).expect("event serializes to JSON") {
        // A unit variant serializes as its bare name.
        Value::String(name) => (name, Value::Null),
        Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
        other => panic!("events must be an externally tagged enum, got {other}"),
    };
    wit_aggregate::NewEvent {
        event_type,
        data: data.to_string(),
    }
}
