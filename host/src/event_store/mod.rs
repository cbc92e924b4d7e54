//! The write store: an append-only log of events, grouped in streams.
//!
//! Guarantees, for every implementation:
//! - An append is atomic: all of its events and its idempotency record are stored, or
//!   none are.
//! - Optimistic concurrency: an append names the stream version it was decided at and
//!   fails with [`AppendError::Conflict`] if the stream has moved since.
//! - Events get a global position, strictly increasing and gap-free, and a version
//!   within their stream, starting at 1 and gap-free.
//! - An idempotency key is stored with the append it belongs to; an append whose key is
//!   already stored appends nothing and reports the first outcome. Keys are kept until
//!   [`EventStore::expire_idempotency_keys`] deletes them (the host's retention).
//! - An acknowledged append is durable to the degree [`Durability`] promises.
//!
//! This module knows nothing of Wasm or HTTP. Two implementations: [`sqlite`], one
//! file in the host's data folder (the default), and [`postgres`], one PostgreSQL
//! database that several hosts share (`tessera serve --store postgres://...`, see
//! `docs/postgres.md`).

mod postgres;
mod sqlite;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

pub use postgres::PostgresEventStore;
pub use sqlite::SqliteEventStore;
pub(crate) use sqlite::{plan_once, quick_check};

/// Why and by whom an event was written; stored with every event as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// When the command was accepted, RFC 3339 in UTC.
    pub timestamp: String,
    /// The id of the HTTP request that sent the command (`x-request-id`), so that an
    /// event leads back to the request's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The verified claims of the caller who sent the command, when the host
    /// authenticates callers: what the handler was shown, kept with the events so that
    /// the audit trail says with which roles (and by which token) a change was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

/// A caller's verified claims: a JSON object, kept as its text (it is handed to plugins
/// as text and written with the metadata as it is). Stored as an object, not a string.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Claims(Box<RawValue>);

impl Claims {
    /// Claims from their JSON text; fails if it is not JSON (callers check it is an
    /// object).
    pub fn from_json(text: String) -> Result<Claims, serde_json::Error> {
        RawValue::from_string(text).map(Claims)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Claims {}

impl<'de> Deserialize<'de> for Claims {
    // Through a `Value`, so that metadata reads from any deserializer (a raw value
    // reads only from JSON text).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Claims::from_json(value.to_string()).map_err(serde::de::Error::custom)
    }
}

/// An event to append; the store assigns its position, version and timestamp.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    /// JSON text, already validated by the caller.
    pub data: Box<RawValue>,
    pub metadata: Metadata,
}

/// An event as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Box<RawValue>,
    pub metadata: Metadata,
    /// When the event was appended, RFC 3339 in UTC.
    pub timestamp: String,
}

/// An aggregate's state as a handler folded it, kept so that a command on a long stream
/// after a restart folds only the events since. Only a cache: keyed by the digest of
/// the code that folded it, never read by other code, and safe to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: String,
    /// sha256 of the handler's code, hex.
    pub digest: String,
    /// The stream version the state includes.
    pub version: u64,
    /// The state, JSON.
    pub state: String,
}

/// An idempotency key, stored in the same transaction as the append it belongs to.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// A digest of the request, so that a key reused for another request is told apart.
    pub request_digest: String,
}

/// One atomic append to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream: String,
    /// The stream version the events were decided at (0: the stream must not exist).
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<Idempotency>,
}

/// What an append stored.
#[derive(Debug, Clone)]
pub struct Commit {
    pub stream: String,
    /// The stream's version after the append.
    pub stream_version: u64,
    /// The global position of the last event appended; the head at the time if the
    /// append had no events.
    pub position: u64,
    pub events: Vec<RecordedEvent>,
}

/// The outcome of an append that did not fail.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// The events were stored.
    Appended(Commit),
    /// The idempotency key was stored already: nothing was appended, and this is what
    /// the first append stored.
    AlreadyApplied(IdempotentCommit),
}

/// What an idempotency key was stored with: the request's digest and its commit.
#[derive(Debug, Clone)]
pub struct IdempotentCommit {
    pub request_digest: String,
    pub commit: Commit,
}

/// How far the store goes before it acknowledges an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every commit reaches stable storage before it is acknowledged: an acknowledged
    /// append survives power loss.
    #[default]
    Full,
    /// Commits are acknowledged once written to the OS; a power loss (not a process
    /// crash) may lose the last moments of acknowledged appends.
    Normal,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream moved on since the caller read it. Reload the state and decide again,
    /// or report the conflict to a caller who named the version.
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    Conflict {
        stream: String,
        expected: u64,
        actual: u64,
    },
    /// The store failed; nothing was appended. Report it; retrying may help.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store itself failed: its database, I/O, corruption, or the store shutting down.
/// Every variant is the server's failure, never the caller's: an HTTP caller gets a
/// 5xx. The variants name no database crate, so that any store fits behind the trait.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database behind the store failed an operation (locked past its timeout, a
    /// full disk, an I/O error); the operation changed nothing. Report it; retrying
    /// later may help.
    #[error("event store database error: {0}")]
    Database(#[source] BoxError),
    /// A group commit failed as a whole; none of its appends were stored. Handle it as
    /// [`StoreError::Database`]: every append of the group gets the same cause.
    #[error("commit failed: {0}")]
    CommitFailed(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached (a server store down, or its connections all
    /// taken past the wait); nothing was changed. A 503: retry later or on another host.
    #[error("event store database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Reading or writing the store's files failed outside the database. Report it.
    #[error("event store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// What the store holds cannot be read back (what was found, and where). The store
    /// needs an operator: restore it from a backup.
    #[error("stored event is corrupt: {0}")]
    Corrupt(String),
    /// The store's writer has stopped (the host is shutting down): retry on another
    /// host or after the restart.
    #[error("the event store is shut down")]
    Closed,
}

/// A store implementation's own error, carried as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// The database behind the store failed with `error`.
    pub fn database(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database(Box::new(error))
    }
}

/// Which database an [`EventStore`] keeps its log in: what operations that work on the
/// store's files (backups, file checks) ask before they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file, `events.db`, in the host's data folder.
    Sqlite,
    /// A PostgreSQL database, possibly shared by several hosts.
    Postgres,
}

/// Snapshots waiting for a store's writer: [`EventStore::save_snapshot`] adds one, the
/// writer takes them all with its next commit or when quiet. Bounded: a writer that
/// cannot keep up sheds snapshots (they are only a cache), not memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingSnapshots(Arc<std::sync::Mutex<Vec<Snapshot>>>);

impl PendingSnapshots {
    /// Snapshots waiting at most; more are dropped.
    const MAX: usize = 4096;

    pub fn push(&self, snapshot: Snapshot) {
        let mut pending = self.0.lock().expect("snapshots lock");
        if pending.len() < Self::MAX {
            pending.push(snapshot);
        }
    }

    /// Every snapshot waiting, leaving none.
    pub fn take(&self) -> Vec<Snapshot> {
        std::mem::take(&mut *self.0.lock().expect("snapshots lock"))
    }
}

/// A row of the log before its JSON columns are checked, as every store reads it.
pub(crate) struct RawEvent {
    pub position: i64,
    pub stream: String,
    pub version: i64,
    pub event_type: String,
    pub data: String,
    pub metadata: String,
    pub timestamp: String,
}

impl RawEvent {
    /// The event, or [`StoreError::Corrupt`] naming its position if a JSON column does
    /// not parse.
    pub fn decode(self) -> Result<RecordedEvent, StoreError> {
        let position = self.position;
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("event {position} {what}: {e}"))
        };
        Ok(RecordedEvent {
            position: position as u64,
            version: self.version as u64,
            metadata: serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", e))?,
            data: RawValue::from_string(self.data).map_err(|e| corrupt("data", e))?,
            stream: self.stream,
            event_type: self.event_type,
            timestamp: self.timestamp,
        })
    }
}

/// The write store's interface. Implementations are shared between tasks.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends atomically, with optimistic concurrency and idempotency.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError>;

    /// A stream's events with a version above `after_version`, at most `limit`.
    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The same as [`EventStore::read_stream`], on the calling thread, which may
    /// block: for callers already on a blocking thread (the command bus reads a
    /// stream and calls its handler in one go, saving a thread hop per command).
    fn read_stream_blocking(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The latest snapshot of `stream` folded by code `digest`, on the calling thread.
    fn snapshot_blocking(&self, stream: &str, digest: &str)
    -> Result<Option<Snapshot>, StoreError>;

    /// The same as [`EventStore::snapshot_blocking`], without blocking the caller.
    async fn snapshot(&self, stream: &str, digest: &str) -> Result<Option<Snapshot>, StoreError>;

    /// True when [`EventStore::read_stream_blocking`] and
    /// [`EventStore::snapshot_blocking`] are quick local reads that a caller may make
    /// on any thread, an async worker's included (SQLite: a read of a local file).
    /// False when they wait on a network: the command bus then reads with the async
    /// methods before it decides, so that no worker thread waits on the database.
    fn reads_blocking(&self) -> bool {
        true
    }

    /// Which database the log is in.
    fn backend(&self) -> Backend;

    /// Keeps a snapshot, later and at no cost to appends (it may ride along with the
    /// next group commit). Best effort: a snapshot that is never written only costs a
    /// longer fold.
    fn save_snapshot(&self, snapshot: Snapshot);

    /// The global log after `after_position`, at most `limit` events.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// What is stored under an idempotency key.
    async fn idempotent_commit(&self, key: &str) -> Result<Option<IdempotentCommit>, StoreError>;

    /// The position of the last committed event (0 for an empty log), updated on every
    /// commit: projections wait on it instead of polling.
    fn head(&self) -> watch::Receiver<u64>;

    /// Deletes at most `limit` idempotency keys stored before `created_before_ms`
    /// (milliseconds since the Unix epoch), oldest first, in the writer's transaction
    /// order; returns how many. A command sent again with a deleted key is a new
    /// command. Bounded, so that commands wait for one deletion at most briefly.
    async fn expire_idempotency_keys(
        &self,
        created_before_ms: i64,
        limit: usize,
    ) -> Result<usize, StoreError>;

    /// The store's size on disk in bytes, if it has files (for `/metrics`).
    fn disk_bytes(&self) -> Option<u64> {
        None
    }
}
