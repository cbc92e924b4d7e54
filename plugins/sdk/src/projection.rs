//! Projections: events in, a read model in the projection's own SQLite database out.

use serde::de::DeserializeOwned;

use crate::__bindings::command::tessera::plugin0_2_0::types as wit;
use crate::__bindings::projection::exports::tessera::plugin0_2_0::projector::BatchFailure;
use crate::__bindings::projection::tessera::plugin0_2_0::projection_store;
use crate::aggregate::Metadata;
use crate::sql::{Rows, Value, from_wit, to_wit};
use crate::tagged::decode_event;
use crate::variants::variant_names;

/// When a projection is applied relative to the commands that produce its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the background; commands never wait for it.
    Async,
    /// Before a command's response: clients read their own writes.
    Inline,
}

/// An event with where it sits in the log.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    pub metadata: Metadata,
    /// When the event was appended, RFC 3339 in UTC.
    pub timestamp: String,
    pub event: E,
}

/// The projection's own database. Statements run inside the host's transaction for
/// the current batch: they commit together with the projection's checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Db;

impl Db {
    /// Runs a statement that returns no rows; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, String> {
        if cfg!(not(target_arch = "wasm32")) {
            return Err(NO_HOST.to_string());
        }
        projection_store::execute(sql, &to_wit(params))
    }

    /// Runs a statement and returns its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, String> {
        if cfg!(not(target_arch = "wasm32")) {
            return Err(NO_HOST.to_string());
        }
        projection_store::query(sql, &to_wit(params)).map(from_wit)
    }
}

/// Natively the SQL imports do not exist (the generated bindings would panic): a
/// projection's SQL runs only inside a host.
pub(crate) const NO_HOST: &str =
    "SQL runs only inside a Tessera host: test projections and queries against one";

/// A projection: a versioned read model built from the events it consumes.
pub trait Projection {
    /// The read model's version. Raise it when the tables' shape or meaning changes:
    /// the host builds the new version beside the old one and switches when it has
    /// caught up.
    const SCHEMA_VERSION: u32;
    const MODE: Mode;

    /// The consumed events: an enum whose variant names are event types. Events of
    /// other types are not delivered.
    type Event: DeserializeOwned;

    /// Creates the tables and indexes, once per schema version.
    fn setup(db: &Db) -> Result<(), String>;

    /// Applies one event. An error fails the batch at this event: the host rolls the
    /// batch back, retries the event alone, then halts or parks it by policy.
    fn apply(db: &Db, event: Envelope<Self::Event>) -> Result<(), String>;
}

pub fn describe<P: Projection>(name: &str, version: &str) -> wit::PluginInfo {
    wit::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        handles: variant_names::<P::Event>()
            .iter()
            .map(|name| name.to_string())
            .collect(),
        details: wit::PluginDetails::Projection(wit::ProjectionDetails {
            schema_version: P::SCHEMA_VERSION,
            mode: match P::MODE {
                Mode::Async => wit::ProjectionMode::Async,
                Mode::Inline => wit::ProjectionMode::Inline,
            },
        }),
    }
}

pub fn setup<P: Projection>() -> Result<(), String> {
    P::setup(&Db)
}

/// Applies a batch in order with [`Projection::apply`]; the first event that fails
/// stops the batch and is reported with its index (the host rolls the batch back and
/// narrows down to it).
pub fn apply_batch<P: Projection>(events: Vec<wit::Event>) -> Result<(), BatchFailure> {
    for (index, event) in events.into_iter().enumerate() {
        apply::<P>(event).map_err(|message| BatchFailure {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            message,
        })?;
    }
    Ok(())
}

fn apply<P: Projection>(event: wit::Event) -> Result<(), String> {
    let typed: P::Event = decode_event(&event)?;
    P::apply(
        &Db,
        Envelope {
            position: event.position,
            stream: event.stream,
            version: event.version,
            event_type: event.event_type,
            metadata: event.metadata.into(),
            timestamp: event.timestamp,
            event: typed,
        },
    )
}
