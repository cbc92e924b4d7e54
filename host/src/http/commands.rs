//! `POST /commands/{command}`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::auth::Identity;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path};
use crate::command_bus::{CommandOutcome, CommandRequest};
use crate::event_store::RecordedEvent;

/// How long a command's response waits for inline projections. Past it the response
/// still reports success (the events are committed) with `Tessera-Inline: lagging`.
const INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The deepest nesting of arrays and objects accepted in a payload.
const MAX_PAYLOAD_DEPTH: usize = crate::json::MAX_DEPTH;

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A command: which aggregate it is for, and its payload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    aggregate_id: String,
    /// The command's fields, as the handler defines them.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    #[serde(default)]
    metadata: Option<CommandMetadata>,
}

/// Tracing ids to carry onto the events.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandMetadata {
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

/// What a command appended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandResponse {
    stream: String,
    /// The stream's version after the command.
    version: u64,
    /// The global position of the last event appended.
    position: u64,
    /// The events appended: position, stream, version, type, data, metadata, timestamp.
    #[schema(value_type = Vec<Object>)]
    events: Vec<RecordedEvent>,
}

/// Executes a command: the handler decides, the events are appended atomically.
#[utoipa::path(
    post,
    path = "/commands/{command}",
    tag = "commands",
    params(
        ("command" = String, Path, description = "The command's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Sent again with the same key, the command returns its first result and appends nothing"),
        ("If-Match" = Option<String>, Header, description = "The stream version the client expects, e.g. \"3\"; a mismatch is 409"),
        ("Tessera-Principal" = Option<String>, Header, description = "The caller's identity, as an authenticating proxy vouches for it; only when the host does not authenticate callers (with authentication on, it is refused with 400)"),
    ),
    request_body = CommandBody,
    responses(
        (status = 200, description = "Appended (or replayed); headers ETag, Tessera-Position", body = CommandResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing, malformed, expired, for another audience or issuer, or does not verify (unauthorized; details.reason says which); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "No handler for the command (unknown_command), or the handler says the target does not exist", body = ErrorBody),
        (status = 409, description = "If-Match names another version (conflict)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "validation_failed, rejected, or idempotency_mismatch", body = ErrorBody),
        (status = 500, description = "The plugin failed (plugin_failed)", body = ErrorBody),
        (status = 503, description = "Too contended, or shutting down", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn execute(
    State(state): State<AppState>,
    Path(command): Path<String>,
    identity: Identity,
    headers: HeaderMap,
    Json(body): Json<CommandBody>,
) -> Result<Response, ApiError> {
    if !body.payload.get().trim_start().starts_with('{') {
        return Err(ApiError::bad_request("the payload must be a JSON object"));
    }
    if crate::json::depth(body.payload.get()) > MAX_PAYLOAD_DEPTH {
        return Err(ApiError::bad_request(format!(
            "the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        )));
    }
    let metadata = body.metadata.unwrap_or_default();
    let request = CommandRequest {
        command,
        aggregate_id: body.aggregate_id,
        payload: body.payload,
        expected_version: expected_version(&headers)?,
        idempotency_key: idempotency_key(&headers)?,
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        principal: identity.principal,
        claims: identity.claims,
        request_id: Some(super::error::current_request_id()),
    };
    let started = crate::metrics::Started::now();
    let name = crate::metrics::enabled().then(|| request.command.clone());
    let result = state.bus.execute(request).await;
    crate::metrics::command(started, name.as_deref(), &result, |name| {
        state.plugins.catalog().command(name).is_some()
    });
    let CommandOutcome { commit, replayed } = result?;
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
