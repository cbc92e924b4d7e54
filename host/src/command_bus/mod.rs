//! The command bus: from a command to events in the write store.
//!
//! For each command it finds the handler, brings the aggregate's state up to date
//! (cached state plus the events since), asks the handler for a decision, and appends
//! the events with the version the decision was made at. Guarantees:
//! - the events of one command are appended atomically, or not at all;
//! - a decision is never appended on top of a state it did not see: if the stream
//!   moved, the command is decided again on the new state (when the caller named no
//!   expected version) or refused as a conflict (when it did);
//! - a command sent again with the same idempotency key appends nothing and returns
//!   the first result; the key with a different command is refused. Keys are scoped
//!   by principal: two callers' equal keys are two keys (see [`scoped_key`]).

mod code;
mod pace;
mod state_cache;
mod stream_locks;
#[cfg(test)]
mod where_decisions_run;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::event_store::{
    AppendError, AppendOutcome, AppendRequest, Claims, Commit, EventStore, Idempotency,
    IdempotentCommit, Metadata, NewEvent, RecordedEvent, Snapshot, StoreError,
};
use crate::plugin::{CallError, Command, CommandRoute, Plugins, Refusal};

use pace::{Counts, Pacer};
use state_cache::{CachedState, StateCache};
use stream_locks::StreamLocks;

pub use code::{AggregateCode, AggregateSession, NativeAggregate};

/// How many times a command is decided again after losing a race to another writer.
const MAX_ATTEMPTS: u32 = 32;
/// Aggregate states kept in memory.
const STATE_CACHE_CAPACITY: usize = 100_000;
/// The most bytes of states the cache holds, all streams together.
const STATE_CACHE_BYTES: usize = 64 << 20;
/// A stream's state is kept as a snapshot once this many events were folded since its
/// last one: a command after a restart then folds fewer than this many.
const SNAPSHOT_EVERY: u64 = 50;
/// The longest an aggregate id may be, in characters.
const MAX_AGGREGATE_ID: usize = 256;

/// A command as a client sent it.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub command: String,
    pub aggregate_id: String,
    pub payload: Box<RawValue>,
    /// The stream version the client expects (`If-Match`); none to let the bus retry.
    pub expected_version: Option<u64>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub principal: Option<String>,
    /// The caller's verified claims (authentication on), shown to the handler and
    /// recorded in the events' metadata.
    pub claims: Option<Claims>,
    /// The HTTP request's id, recorded in the events' metadata.
    pub request_id: Option<String>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub commit: Commit,
    /// True when this is the stored result of an earlier request with the same
    /// idempotency key, and nothing was appended now.
    pub replayed: bool,
}

/// Why a command did not append. Each variant says what the caller can do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No plugin handles this command name: check the name or deploy the handler.
    #[error("no plugin handles the command {0:?}")]
    UnknownCommand(String),
    /// The aggregate id is not acceptable; fix the request.
    #[error("aggregate_id {0}")]
    BadAggregateId(&'static str),
    /// The handler refused the command: the input is malformed, a business rule said
    /// no, or what it refers to does not exist. The caller's to fix; nothing was
    /// appended.
    #[error("{}", refusal_message(.0))]
    Refused(Refusal),
    /// The stream is not at the version the caller expected: reload and decide again.
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    Conflict {
        stream: String,
        expected: u64,
        actual: u64,
    },
    /// The idempotency key was used before for a different command.
    #[error("idempotency key {0:?} was already used for a different command")]
    IdempotencyMismatch(String),
    /// Other writers kept winning the race for this stream; retry later.
    #[error("stream {stream} is too contended: gave up after {attempts} attempts")]
    Contended { stream: String, attempts: u32 },
    /// The plugin failed (trapped, ran too long, returned garbage): a plugin bug.
    #[error(transparent)]
    Plugin(#[from] CallError),
    /// The store failed; nothing was appended.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a refusal says, for logs and [`CommandError`]'s message.
fn refusal_message(refusal: &Refusal) -> &str {
    match refusal {
        Refusal::Invalid(_) => "the command is invalid",
        Refusal::Rejected { message, .. } | Refusal::NotFound(message) => message,
    }
}

/// Routes commands to handlers and appends their events.
#[derive(Debug)]
pub struct CommandBus {
    store: Arc<dyn EventStore>,
    plugins: Arc<Plugins>,
    states: StateCache,
    locks: StreamLocks,
    /// Which plugins' decisions run on the async worker, and which on blocking threads.
    pacer: Arc<Pacer>,
    /// Aggregates compiled into the host, by command name.
    natives: HashMap<String, Arc<NativeAggregate>>,
}

/// Where a command goes: a plugin's route, or an aggregate compiled in.
enum Target {
    Plugin(Arc<CommandRoute>),
    Native(Arc<NativeAggregate>),
}

impl Target {
    fn plugin(&self) -> &str {
        match self {
            Target::Plugin(route) => &route.plugin,
            Target::Native(native) => &native.name,
        }
    }

    fn aggregate_type(&self) -> &str {
        match self {
            Target::Plugin(route) => &route.aggregate_type,
            Target::Native(native) => &native.aggregate_type,
        }
    }

    fn digest(&self) -> &str {
        match self {
            Target::Plugin(route) => &route.digest,
            Target::Native(native) => &native.digest,
        }
    }

    fn code(&self) -> Arc<dyn AggregateCode> {
        match self {
            Target::Plugin(route) => route.handler.clone(),
            Target::Native(native) => native.code.clone(),
        }
    }
}

impl std::fmt::Debug for dyn EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStore")
    }
}

impl CommandBus {
    pub fn new(store: Arc<dyn EventStore>, plugins: Arc<Plugins>) -> Self {
        CommandBus {
            store,
            plugins,
            states: StateCache::new(STATE_CACHE_CAPACITY, STATE_CACHE_BYTES),
            locks: StreamLocks::default(),
            pacer: Arc::default(),
            natives: HashMap::new(),
        }
    }

    /// Serves `aggregate`'s commands with native code, ahead of any plugin handling
    /// the same names. Used by the benchmark to price the sandbox against the same
    /// aggregate compiled natively.
    pub fn serve_native(mut self, aggregate: NativeAggregate) -> Self {
        let aggregate = Arc::new(aggregate);
        for command in &aggregate.commands {
            self.natives.insert(command.clone(), aggregate.clone());
        }
        self
    }

    /// Executes a command: decide, append, retry on a lost race.
    pub async fn execute(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        check_aggregate_id(&request.aggregate_id)?;
        let route = match self.natives.get(&request.command) {
            Some(native) => Target::Native(native.clone()),
            None => Target::Plugin(
                self.plugins
                    .catalog()
                    .command(&request.command)
                    .ok_or_else(|| CommandError::UnknownCommand(request.command.clone()))?
                    .clone(),
            ),
        };
        let stream = format!("{}-{}", route.aggregate_type(), request.aggregate_id);
        let idempotency = request.idempotency_key.as_ref().map(|key| Idempotency {
            key: scoped_key(request.principal.as_deref(), key),
            request_digest: request_digest(&request),
        });
        if let Some(idempotency) = &idempotency
            && let Some(stored) = self.store.idempotent_commit(&idempotency.key).await?
        {
            return replay(idempotency, stored);
        }

        let metadata = metadata_for(&request);
        let command = Command {
            name: request.command.clone(),
            aggregate_id: request.aggregate_id.clone(),
            payload: request.payload.get().to_string(),
            metadata: metadata.clone(),
        };
        let _turn = self.locks.lock(&stream).await;
        // A retry that arrived while the first request was still deciding waited for
        // the turn above; it must replay that result, not decide again (deciding again
        // could refuse what the first attempt accepted).
        if let Some(idempotency) = &idempotency
            && let Some(stored) = self.store.idempotent_commit(&idempotency.key).await?
        {
            return replay(idempotency, stored);
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let (version, decision) = self.decide(&route, &stream, &command).await?;
            if let Some(expected) = request.expected_version
                && expected != version
            {
                return Err(CommandError::Conflict {
                    stream,
                    expected,
                    actual: version,
                });
            }
            let events = match decision {
                Ok(events) => events,
                Err(refusal) => return Err(CommandError::Refused(refusal)),
            };
            let append = AppendRequest {
                stream: stream.clone(),
                expected_version: version,
                events: events
                    .into_iter()
                    .map(|(event_type, data)| NewEvent {
                        event_type,
                        data,
                        metadata: metadata.clone(),
                    })
                    .collect(),
                idempotency: idempotency.clone(),
            };
            match self.store.append(append).await {
                Ok(AppendOutcome::Appended(commit)) => {
                    return Ok(CommandOutcome {
                        commit,
                        replayed: false,
                    });
                }
                Ok(AppendOutcome::AlreadyApplied(stored)) => {
                    return replay(idempotency.as_ref().expect("a key was sent"), stored);
                }
                Err(AppendError::Conflict {
                    expected, actual, ..
                }) => {
                    if request.expected_version.is_some() {
                        return Err(CommandError::Conflict {
                            stream,
                            expected,
                            actual,
                        });
                    }
                    // Another writer got there first: decide again on its result.
                    tracing::debug!(%stream, attempt, "append conflict, deciding again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(AppendError::Store(error)) => return Err(error.into()),
            }
        }
        Err(CommandError::Contended {
            stream,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Brings the stream's state up to date and asks the handler for a decision, in one
    /// session: on this async worker while the plugin's decisions are fast, on a
    /// blocking thread otherwise (see [`pace`]). Returns the version the decision was
    /// made at.
    async fn decide(
        &self,
        route: &Target,
        stream: &str,
        command: &Command,
    ) -> Result<(u64, crate::plugin::Decision), CommandError> {
        let cached = self.states.get(stream, route.digest());
        // A store whose reads wait on a network (PostgreSQL) is read here, with the
        // async methods, so that the decision below never blocks a thread on it; a
        // local store (SQLite) is read inside the decision, saving the hop.
        let start = if self.store.reads_blocking() {
            Start::Unread(cached)
        } else {
            let (cached, newer) = unfolded_async(self.store.as_ref(), stream, cached).await?;
            Start::Read(cached, newer)
        };
        let code = route.code();
        let (folded, decision) = if self.pacer.inline(route.digest()) && code.warm() {
            // Another command may have taken the idle instance meanwhile, leaving this
            // one to create its own here on the async worker: its time counts then, so
            // that the cool-down still bounds what a plugin holds a worker for.
            self.pacer.timed(route.digest(), || {
                let (decided, _) =
                    decide_now(code.as_ref(), self.store.as_ref(), stream, start, command);
                (decided, Counts::Yes)
            })
        } else {
            let command = command.clone();
            let store = self.store.clone();
            let stream_name = stream.to_string();
            // The request's id goes along, so the plugin's log lines name the request.
            let request_id = crate::request_id::current();
            let pacer = self.pacer.clone();
            let digest = route.digest().to_string();
            tokio::task::spawn_blocking(move || {
                crate::request_id::carry(request_id, || {
                    pacer.timed(&digest, || {
                        decide_now(code.as_ref(), store.as_ref(), &stream_name, start, &command)
                    })
                })
            })
            .await
            .map_err(|e| CallError::Trapped {
                plugin: route.plugin().to_string(),
                reason: format!("host task failed: {e}"),
            })?
        }
        .map_err(|e| match e {
            Decide::Store(error) => CommandError::from(error),
            Decide::Call(error) => CommandError::from(error),
        })?;
        let version = folded.version;
        self.states.put(stream.to_string(), folded);
        Ok((version, decision))
    }
}

/// Where a decision starts: the cached state alone (the events since are read on the
/// deciding thread), or the state and the events since, read already.
enum Start {
    Unread(CachedState),
    Read(CachedState, Vec<RecordedEvent>),
}

/// One decision, on the calling thread: read what the cached state lacks (unless read
/// already), fold it (one guest call for all of it with 0.2.0 handlers; 0.1.0 ones fold
/// per event), keep a snapshot when enough was folded since the last one, and decide.
///
/// Also says whether the decision's time counts for the plugin's pace: not when the
/// session's instance was created for it.
fn decide_now(
    handler: &dyn AggregateCode,
    store: &dyn EventStore,
    stream: &str,
    start: Start,
    command: &Command,
) -> (
    Result<(CachedState, crate::plugin::Decision), Decide>,
    Counts,
) {
    let mut session = match handler.session() {
        Ok(session) => session,
        Err(error) => return (Err(error.into()), Counts::No),
    };
    let counts = if session.fresh() {
        Counts::No
    } else {
        Counts::Yes
    };
    (
        decide_in(session.as_mut(), store, stream, start, command),
        counts,
    )
}

/// [`decide_now`]'s work in the session it opened.
fn decide_in(
    session: &mut dyn AggregateSession,
    store: &dyn EventStore,
    stream: &str,
    start: Start,
    command: &Command,
) -> Result<(CachedState, crate::plugin::Decision), Decide> {
    let (cached, newer) = match start {
        Start::Unread(cached) => unfolded(store, stream, cached).map_err(Decide::Store)?,
        Start::Read(cached, newer) => (cached, newer),
    };
    let state = session.fold(cached.state, &newer)?;
    let version = newer.last().map_or(cached.version, |event| event.version);
    let mut snapshot = cached.snapshot;
    if let Some(folded) = &state
        && version >= snapshot + SNAPSHOT_EVERY
    {
        store.save_snapshot(Snapshot {
            stream: stream.to_string(),
            digest: cached.digest.clone(),
            version,
            state: folded.to_string(),
        });
        snapshot = version;
    }
    let decision = session.handle(state.as_deref(), command)?;
    Ok((
        CachedState {
            digest: cached.digest,
            version,
            state,
            snapshot,
        },
        decision,
    ))
}

/// The state to start from and the events to fold into it. A stream the cache does not
/// hold starts from its latest snapshot by the same code (a lookup by primary key,
/// cheap even when there is none).
fn unfolded(
    store: &dyn EventStore,
    stream: &str,
    cached: CachedState,
) -> Result<(CachedState, Vec<RecordedEvent>), StoreError> {
    let start = if cached.version > 0 {
        cached
    } else {
        restore(store, stream, cached)
    };
    let newer = store.read_stream_blocking(stream, start.version, usize::MAX)?;
    Ok((start, newer))
}

/// [`unfolded`] with the store's async reads, for a store that cannot read on the
/// calling thread without blocking it.
async fn unfolded_async(
    store: &dyn EventStore,
    stream: &str,
    cached: CachedState,
) -> Result<(CachedState, Vec<RecordedEvent>), StoreError> {
    let start = if cached.version > 0 {
        cached
    } else {
        restored(store.snapshot(stream, &cached.digest).await, stream, cached)
    };
    let newer = store.read_stream(stream, start.version, usize::MAX).await?;
    Ok((start, newer))
}

/// The latest snapshot of `stream` by the same code, if any. One that cannot be read,
/// or is not JSON, is passed over: the fold from the start gives the same state, only
/// later.
fn restore(store: &dyn EventStore, stream: &str, cached: CachedState) -> CachedState {
    restored(
        store.snapshot_blocking(stream, &cached.digest),
        stream,
        cached,
    )
}

/// The state to start from, given what reading the snapshot found.
fn restored(
    found: Result<Option<Snapshot>, StoreError>,
    stream: &str,
    cached: CachedState,
) -> CachedState {
    match found {
        Ok(Some(snapshot)) if crate::json::check(&snapshot.state).is_ok() => CachedState {
            digest: cached.digest,
            version: snapshot.version,
            state: Some(Arc::from(snapshot.state)),
            snapshot: snapshot.version,
        },
        Ok(_) => cached,
        Err(error) => {
            tracing::debug!(%stream, %error, "snapshot not read; folding from the start");
            cached
        }
    }
}

/// What can fail while deciding on a blocking thread.
enum Decide {
    Store(StoreError),
    Call(CallError),
}

impl From<CallError> for Decide {
    fn from(error: CallError) -> Self {
        Decide::Call(error)
    }
}

fn check_aggregate_id(id: &str) -> Result<(), CommandError> {
    if id.is_empty() {
        return Err(CommandError::BadAggregateId("must not be empty"));
    }
    // Characters, not bytes: what JSON Schema's maxLength counts, so the OpenAPI
    // description states the bound exactly.
    if id.chars().count() > MAX_AGGREGATE_ID {
        return Err(CommandError::BadAggregateId(
            "must be at most 256 characters",
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(CommandError::BadAggregateId(
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// What identifies a command for idempotency: its name, aggregate and payload, with
/// the payload's keys in a canonical order so that formatting does not matter.
fn request_digest(request: &CommandRequest) -> String {
    let payload: serde_json::Value =
        serde_json::from_str(request.payload.get()).unwrap_or(serde_json::Value::Null);
    let mut hasher = Sha256::new();
    for part in [
        request.command.as_str(),
        request.aggregate_id.as_str(),
        &payload.to_string(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Separates the principal from the client's key in a scoped key. A key from a client
/// is visible ASCII (an HTTP header) and a principal has no control characters, so
/// neither can hold it: a scoped key never equals another principal's, nor any
/// anonymous key.
const SCOPE_SEPARATOR: char = '\u{1f}';

/// The key an idempotency key is stored under: the caller's principal, the separator
/// and the key; an anonymous caller's key as it is, which is also how keys were stored
/// before they were scoped, so those keep working for anonymous callers.
pub fn scoped_key(principal: Option<&str>, key: &str) -> String {
    match principal {
        Some(principal) => format!("{principal}{SCOPE_SEPARATOR}{key}"),
        None => key.to_string(),
    }
}

/// The client's own key within a stored one.
fn client_key(stored: &str) -> &str {
    stored
        .rsplit_once(SCOPE_SEPARATOR)
        .map_or(stored, |(_, key)| key)
}

fn replay(
    idempotency: &Idempotency,
    stored: IdempotentCommit,
) -> Result<CommandOutcome, CommandError> {
    if stored.request_digest != idempotency.request_digest {
        return Err(CommandError::IdempotencyMismatch(
            client_key(&idempotency.key).to_string(),
        ));
    }
    Ok(CommandOutcome {
        commit: stored.commit,
        replayed: true,
    })
}

fn metadata_for(request: &CommandRequest) -> Metadata {
    let command_id = uuid::Uuid::now_v7().to_string();
    Metadata {
        correlation_id: request
            .correlation_id
            .clone()
            .unwrap_or_else(|| command_id.clone()),
        causation_id: request
            .causation_id
            .clone()
            .unwrap_or_else(|| command_id.clone()),
        principal: request.principal.clone(),
        claims: request.claims.clone(),
        request_id: request.request_id.clone(),
        timestamp: jiff::Timestamp::now().to_string(),
        command_id,
    }
}

/// A short, jittered pause before deciding again, growing with the attempts.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_micros(500) * attempt.min(20);
    base + Duration::from_micros(fastrand::u64(0..1000))
}

#[cfg(test)]
mod tests {
    use super::{client_key, scoped_key};

    #[test]
    fn keys_are_scoped_by_principal() {
        assert_eq!(scoped_key(None, "k"), "k");
        assert_ne!(scoped_key(Some("ada"), "k"), scoped_key(Some("grace"), "k"));
        assert_ne!(scoped_key(Some("ada"), "k"), scoped_key(None, "k"));
        // A principal that ends like another's key cannot forge its scope.
        assert_ne!(scoped_key(Some("a"), "b c"), scoped_key(Some("a b"), "c"));
        assert_eq!(client_key(&scoped_key(Some("ada"), "k-1")), "k-1");
        assert_eq!(client_key(&scoped_key(None, "k-1")), "k-1");
    }
}
