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
    /// The caller's verified claims as JSON object text (`{"sub": ..., "roles": [...]}`)
    /// when the host authenticates callers; `principal` is then their `sub`. None for
    /// an anonymous caller. Read them with [`Metadata::claims`] or [`Metadata::roles`].
    pub claims: Option<String>,
}

impl Metadata {
    /// The verified claims as `T` (a struct of the claims you need, or
    /// `serde_json::Map`); none for an anonymous caller, an error if they do not fit `T`.
    pub fn claims<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.claims.as_deref().map(serde_json::from_str)
    }

    /// The strings of the verified `roles` claim; empty for an anonymous caller.
    pub fn roles(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Roles {
            #[serde(default)]
            roles: Vec<Value>,
        }
        match self.claims::<Roles>() {
            Some(Ok(claims)) => claims
                .roles
                .into_iter()
                .filter_map(|role| role.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the verified caller carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }
}

impl From<wit::Metadata> for Metadata {
    fn from(m: wit::Metadata) -> Self {
        Metadata {
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
            principal: m.principal,
            timestamp: m.timestamp,
            claims: m.claims,
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

pub(crate) fn load<A: Aggregate>(state: Option<String>) -> A {
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
    crate::tagged::decode_event(&event).unwrap_or_else(|message| panic!("{message}"))
}

/// An event from its stored form, its type and its data: the inverse of
/// [`event_parts`].
pub(crate) fn event_from_parts<E: DeserializeOwned>(
    event_type: &str,
    data: Value,
) -> Result<E, serde_json::Error> {
    let tagged = Value::Object(Map::from_iter([(event_type.to_string(), data)]));
    serde_json::from_value(tagged)
}

pub fn handle<A: Aggregate>(
    state: Option<String>,
    command: wit_aggregate::Command,
) -> Result<Vec<wit_aggregate::NewEvent>, wit::Refusal> {
    let aggregate = load::<A>(state);
    let payload: Value = serde_json::from_str(&command.payload)
        .map_err(|e| Refusal::invalid("payload", format!("not JSON: {e}")))?;
    let typed = decode_command::<A>(command.name, payload)?;
    let events = aggregate.handle(typed, &command.metadata.into())?;
    Ok(events.iter().map(to_new_event).collect())
}

/// A command as the aggregate's own type, from its name and JSON payload; a payload
/// that does not fit is refused as invalid, naming the offending field.
pub(crate) fn decode_command<A: Aggregate>(
    name: String,
    payload: Value,
) -> Result<A::Command, Refusal> {
    let tagged = Value::Object(Map::from_iter([(name, payload)]));
    // The first path segment is the command name itself; fields start below it.
    serde_path_to_error::deserialize(tagged).map_err(|e| Refusal::from_serde(e, 1))
}

fn to_new_event<E: Serialize>(event: &E) -> wit_aggregate::NewEvent {
    let (event_type, data) = event_parts(event);
    wit_aggregate::NewEvent {
        event_type,
        data: data.to_string(),
    }
}

/// An event's stored form: its type (the variant name) and its data.
pub(crate) fn event_parts<E: Serialize>(event: &E) -> (String, Value) {
    match serde_json::to_value(event).expect("event serializes to JSON") {
        // A unit variant serializes as its bare name.
        Value::String(name) => (name, Value::Null),
        Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
        other => panic!("events must be an externally tagged enum, got {other}"),
    }
}
