//! `GET /events/stream`: the log as server-sent events, resumable and filtered.
//!
//! Guarantees:
//! - Every event is sent with `id: <position>` and `data:` the event exactly as
//!   `GET /events` shows it, in log order, each at most once per connection. A client
//!   that reconnects with `Last-Event-ID` (or `after`) set to the last id it received
//!   misses nothing and receives nothing twice.
//! - Filters (`stream_prefix`, `event_type`) apply on the host; the ids stay log
//!   positions, so resuming a filtered stream works the same way.
//! - A slow client never slows the writer: each client pulls the log at its own pace
//!   from the store's read connections (a task per client reads pages into a bounded
//!   buffer and waits on the head watch for more); the writer never waits on a client.
//!   A client whose buffer stays full for [`StreamLimits::max_stall`] is told
//!   `event: lagged` with `data: {"resume_after": N}` (the last position it was sent)
//!   and the stream ends; its task and buffer are freed.
//! - Keep-alive comments every 15 s of silence; streams end when the host shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use crate::event_store::{EventStore, RecordedEvent};

/// How often a silent stream sends a comment, so proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The most event types one filter lists.
const MAX_EVENT_TYPES: usize = 64;
/// The longest event type (as the host accepts from plugins).
const MAX_EVENT_TYPE: usize = 128;

/// How much a client may cost the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// Events read ahead of the client at most (its buffer).
    pub buffer: usize,
    /// Events read from the store per page.
    pub page: usize,
    /// How long the buffer may stay full, the client taking nothing, before the client
    /// is told it lagged and the stream ends.
    pub max_stall: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            buffer: 1024,
            page: 256,
            max_stall: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Send events at positions above this one; by default the head at connect time
    /// (only new events). The `Last-Event-ID` header, when present, overrides it.
    #[param(format = "uint64", maximum = 18446744073709551615_u64)]
    after: Option<u64>,
    /// Only events of streams whose name starts with this, e.g. `account-`.
    stream_prefix: Option<String>,
    /// Only events of these types, comma-separated, e.g. `Deposited,Withdrawn`: 1 to 64
    /// types, each 1 to 128 of `A-Z a-z 0-9 - _ . :` (spaces and tabs around them are
    /// ignored).
    #[param(
        pattern = r"^[ \t]*[-A-Za-z0-9_.:]{1,128}[ \t]*(?:,[ \t]*[-A-Za-z0-9_.:]{1,128}[ \t]*){0,63}$"
    )]
    event_type: Option<String>,
}

/// One server-sent event of the stream, for the description: as OpenAPI 3.2 reads an
/// event stream, the schema describes each event (its `event`, `id` and `data` fields),
/// and `data` holds JSON of the schema in `contentSchema`.
pub struct StreamedEvent;

impl utoipa::PartialSchema for StreamedEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let position = serde_json::json!({"type": "integer", "minimum": 0});
        let schema = serde_json::json!({
            "oneOf": [
                {
                    "description": "An event of the log: `id` is its position",
                    "type": "object",
                    "required": ["id", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["message"]},
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {
                                "type": "object",
                                "required": ["position", "stream", "version", "type", "data", "metadata", "timestamp"],
                                "properties": {
                                    "position": position,
                                    "stream": {"type": "string"},
                                    "version": position,
                                    "type": {"type": "string"},
                                    "metadata": {"type": "object"},
                                    "timestamp": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                {
                    "description": "The client fell too far behind; the stream ends after this",
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["lagged"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {
                                "type": "object",
                                "required": ["resume_after"],
                                "properties": {"resume_after": position},
                            },
                        },
                    },
                },
            ],
        });
        serde_json::from_value(schema).expect("the streamed event's schema is a schema")
    }
}

impl utoipa::ToSchema for StreamedEvent {}

/// Which events a client asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    stream_prefix: Option<String>,
    event_types: Option<Vec<String>>,
}

impl Filter {
    fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|prefix| event.stream.starts_with(prefix))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
    }
}

/// The log as it happens, as server-sent events.
#[utoipa::path(
    get,
    path = "/events/stream",
    tag = "events",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, format = "uint64", maximum = 18446744073709551615_u64, description = "The last id received (a log position, a whole number): resume after it (overrides `after`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: each `id: <position>` with `data: <the event as GET /events shows it>`; `event: lagged` with `data: {\"resume_after\": N}` ends the stream of a client too far behind (reconnect with Last-Event-ID); comments every 15 s as keep-alives", content_type = "text/event-stream", body = StreamedEvent),
        (status = 400, description = "Bad parameters (bad_request): `after` or `Last-Event-ID` not a position, an event type list that does not have its format, or a parameter repeated or unknown", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized)", body = ErrorBody),
        (status = 403, description = "The caller lacks the required role (forbidden)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn follow_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<impl IntoResponse, ApiError> {
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|id| id.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be a log position (a whole number)")
                })?,
        ),
    };
    let filter = filter(params.stream_prefix, params.event_type)?;
    let after = resume
        .or(params.after)
        .unwrap_or_else(|| *state.store.head().borrow());
    let events = follow(
        state.store.clone(),
        after,
        filter,
        StreamLimits::default(),
        state.shutdown.clone(),
    );
    let events = futures_util::StreamExt::map(events, |item| Ok::<_, Infallible>(sse_event(item)));
    Ok((
        // Proxies that buffer responses (nginx) would hold events back.
        [("x-accel-buffering", "no")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}

fn filter(stream_prefix: Option<String>, event_type: Option<String>) -> Result<Filter, ApiError> {
    let event_types = match event_type {
        None => None,
        Some(list) => {
            // Only spaces and tabs around a type are ignored, as the description's
            // pattern says.
            let types: Vec<String> = list
                .split(',')
                .map(|t| t.trim_matches([' ', '\t']).to_string())
                .collect();
            if types.len() > MAX_EVENT_TYPES {
                return Err(ApiError::bad_request(format!(
                    "event_type lists at most {MAX_EVENT_TYPES} types"
                )));
            }
            if let Some(bad) = types.iter().find(|t| !valid_event_type(t)) {
                return Err(ApiError::bad_request(format!(
                    "event_type {bad:?} is not an event type (1-{MAX_EVENT_TYPE} of A-Z a-z 0-9 - _ . :)"
                )));
            }
            Some(types)
        }
    };
    Ok(Filter {
        stream_prefix: stream_prefix.filter(|p| !p.is_empty()),
        event_types,
    })
}

/// The rule the host applies to the event types plugins return: a type outside it can
/// match nothing, so asking for one is a mistake worth a 400.
fn valid_event_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_TYPE
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// What a client is sent.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Box<RecordedEvent>),
    /// The client fell too far behind; the stream ends after this.
    Lagged {
        resume_after: u64,
    },
}

fn sse_event(item: Item) -> Event {
    match item {
        Item::Event(event) => {
            let data = serde_json::to_string(&event).unwrap_or_else(|error| {
                // A stored event always serializes; if one ever did not, the client
                // still gets its position rather than a broken stream.
                tracing::error!(position = event.position, %error, "event does not serialize");
                "null".to_string()
            });
            Event::default().id(event.position.to_string()).data(data)
        }
        Item::Lagged { resume_after } => Event::default()
            .event("lagged")
            .data(serde_json::json!({ "resume_after": resume_after }).to_string()),
    }
}

/// Why a client's reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client went away.
    Gone,
    /// The host is stopping.
    Stopped,
    /// The buffer stayed full too long.
    Lagged,
    /// The store failed; the client reconnects.
    Failed,
}

/// The events after `after` that pass `filter`, as they are appended, until `stop`
/// fires, the consumer drops the stream, or the consumer lags.
pub(crate) fn follow(
    store: Arc<dyn EventStore>,
    after: u64,
    filter: Filter,
    limits: StreamLimits,
    stop: CancellationToken,
) -> impl Stream<Item = Item> + Send + 'static {
    let (sender, receiver) = mpsc::channel(limits.buffer.max(1));
    let reader = tokio::spawn(read_ahead(
        store,
        after,
        filter,
        limits,
        sender,
        stop.clone(),
    ));
    let state = Consumer {
        receiver,
        reader: Some(reader),
        last: after,
        stop,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let next = tokio::select! {
            // Events already read go out before a stop is noticed only if they are
            // ready; a stop ends the stream promptly.
            biased;
            () = state.stop.cancelled() => return None,
            next = state.receiver.recv() => next,
        };
        match next {
            Some(event) => {
                state.last = event.position;
                Some((Item::Event(Box::new(event)), state))
            }
            // The reader ended and everything it read was sent: say why, once.
            None => {
                let ended = match state.reader.take() {
                    Some(reader) => reader.await.unwrap_or(Ended::Failed),
                    None => return None,
                };
                let resume_after = state.last;
                (ended == Ended::Lagged).then_some((Item::Lagged { resume_after }, state))
            }
        }
    })
}

/// The consuming side of one client's stream.
struct Consumer {
    receiver: mpsc::Receiver<RecordedEvent>,
    reader: Option<tokio::task::JoinHandle<Ended>>,
    /// The position of the last event handed to the client.
    last: u64,
    stop: CancellationToken,
}

/// One client's reader: pages of the log into the client's buffer, waiting on the head
/// when it has read everything.
async fn read_ahead(
    store: Arc<dyn EventStore>,
    mut after: u64,
    filter: Filter,
    limits: StreamLimits,
    sender: mpsc::Sender<RecordedEvent>,
    stop: CancellationToken,
) -> Ended {
    let mut head = store.head();
    loop {
        let page = tokio::select! {
            page = store.read_all(after, limits.page.max(1)) => page,
            () = sender.closed() => return Ended::Gone,
            () = stop.cancelled() => return Ended::Stopped,
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, after, "event stream: reading the log failed");
                return Ended::Failed;
            }
        };
        if page.is_empty() {
            tokio::select! {
                changed = head.wait_for(|head| *head > after) => {
                    if changed.is_err() {
                        return Ended::Stopped;
                    }
                }
                () = sender.closed() => return Ended::Gone,
                () = stop.cancelled() => return Ended::Stopped,
            }
            continue;
        }
        for event in page {
            let position = event.position;
            if filter.matches(&event) {
                // The wait is for room in the buffer: it ends as soon as the client
                // takes one event, so only a client that takes nothing for the whole
                // stall is cut off.
                match tokio::time::timeout(limits.max_stall, sender.send(event)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ended::Gone,
                    Err(_) => return Ended::Lagged,
                }
            }
            after = position;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;
    use serde_json::value::to_raw_value;
    use tokio_util::sync::CancellationToken;

    use super::{Filter, Item, StreamLimits, follow};
    use crate::event_store::{
        AppendRequest, Durability, EventStore, Metadata, NewEvent, SqliteEventStore,
    };

    async fn store_with(events: usize) -> (tempfile::TempDir, Arc<dyn EventStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(
            SqliteEventStore::open(&dir.path().join("events.db"), Durability::Normal).unwrap(),
        );
        for n in 0..events {
            store
                .append(AppendRequest {
                    stream: format!("s-{n}"),
                    expected_version: 0,
                    events: vec![NewEvent {
                        event_type: "Happened".into(),
                        data: to_raw_value(&n).unwrap(),
                        // From JSON, so that fields added to the metadata later
                        // take their defaults here.
                        metadata: serde_json::from_value::<Metadata>(serde_json::json!({
                            "command_id": "c",
                            "correlation_id": "c",
                            "causation_id": "c",
                            "timestamp": "2026-01-01T00:00:00Z",
                        }))
                        .unwrap(),
                    }],
                    idempotency: None,
                })
                .await
                .unwrap();
        }
        (dir, store)
    }

    /// A client that takes nothing while its buffer is full is told where to resume,
    /// after the events it was handed, and its stream ends.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_told_it_lagged() {
        let (_dir, store) = store_with(40).await;
        let limits = StreamLimits {
            buffer: 4,
            page: 8,
            max_stall: Duration::from_millis(50),
        };
        let mut events = Box::pin(follow(
            store,
            0,
            Filter::default(),
            limits,
            CancellationToken::new(),
        ));
        let mut taken = Vec::new();
        for _ in 0..3 {
            match events.next().await {
                Some(Item::Event(event)) => taken.push(event.position),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        assert_eq!(taken, [1, 2, 3]);
        // The client stalls, for twenty times the stall the reader allows: the
        // reader fills the buffer and gives up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut rest = Vec::new();
        let tail = async {
            loop {
                match events.next().await {
                    Some(Item::Event(event)) => rest.push(event.position),
                    Some(Item::Lagged { resume_after }) => break resume_after,
                    None => panic!("the stream ended without saying it lagged"),
                }
            }
        };
        let lagged = tokio::time::timeout(Duration::from_secs(60), tail)
            .await
            .expect("the stream says it lagged");
        assert!(rest.len() <= limits.buffer + 1, "{rest:?}");
        assert_eq!(lagged, rest.last().copied().unwrap_or(3));
        assert!(
            events.next().await.is_none(),
            "the stream ends after lagged"
        );
    }

    /// A stop ends a stream that is waiting for new events.
    #[tokio::test]
    async fn a_stop_ends_a_waiting_stream() {
        let (_dir, store) = store_with(2).await;
        let stop = CancellationToken::new();
        let mut events = Box::pin(follow(
            store,
            2,
            Filter::default(),
            StreamLimits::default(),
            stop.clone(),
        ));
        let waiting = tokio::spawn(async move { events.next().await.is_none() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        assert!(waiting.await.unwrap());
    }
}
