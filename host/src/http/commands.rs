//! `POST /commands/{command}`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::command_bus::{CommandOutcome, CommandRequest};
use crate::event_store::RecordedEvent;

/// How long a command's response waits for inline projections. Past it the response
/// still reports success (the events are committed) with `Tessera-Inline: lagging`.
const INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    aggregate_id: String,
    payload: Box<RawValue>,
    #[serde(default)]
    metadata: Option<CommandMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandMetadata {
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CommandResponse {
    stream: String,
    /// The stream's version after the command.
    version: u64,
    /// The global position of the last event appended.
    position: u64,
    events: Vec<RecordedEvent>,
}

pub async fn execute(
    State(state): State<AppState>,
    Path(command): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CommandBody>,
) -> Result<Response, ApiError> {
    let metadata = body.metadata.unwrap_or_default();
    let request = CommandRequest {
        command,
        aggregate_id: body.aggregate_id,
        payload: body.payload,
        expected_version: expected_version(&headers)?,
        idempotency_key: idempotency_key(&headers)?,
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        principal: text_header(&headers, "tessera-principal")?,
    };
    let CommandOutcome { commit, replayed } = state.bus.execute(request).await?;
    // Read-your-writes for inline projections: answer once they hold these events.
    let inline_current = state
        .projections
        .wait_inline(commit.position, INLINE_WAIT)
        .await;
    if !inline_current {
        tracing::warn!(
            position = commit.position,
            "inline projections did not catch up before the command's response"
        );
    }
    let mut response = axum::Json(CommandResponse {
        stream: commit.stream,
        version: commit.stream_version,
        position: commit.position,
        events: commit.events,
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert("etag", HeaderValue::from(commit.stream_version).to_quoted());
    headers.insert("tessera-position", HeaderValue::from(commit.position));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if !inline_current {
        headers.insert("tessera-inline", HeaderValue::from_static("lagging"));
    }
    Ok(response)
}

/// `If-Match: "<version>"` (quotes optional): the stream version the client expects.
fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = text_header(headers, "if-match")? else {
        return Ok(None);
    };
    let trimmed = value.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(trimmed);
    unquoted.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match must be a stream version such as \"3\", not {value:?}"
        ))
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(key) = text_header(headers, "idempotency-key")? else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    Ok(Some(key))
}

fn text_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request(format!("header {name} must be visible ASCII")))
        })
        .transpose()
}

trait Quoted {
    fn to_quoted(self) -> HeaderValue;
}

impl Quoted for HeaderValue {
    fn to_quoted(self) -> HeaderValue {
        let text = format!("\"{}\"", self.to_str().unwrap_or_default());
        HeaderValue::from_str(&text).unwrap_or(self)
    }
}
