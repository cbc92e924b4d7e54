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

/// The most digits an `If-Match` version has: every such number fits a `u64`, so the
/// header's pattern in the description says exactly what is accepted (no stream comes
/// near 10^19 versions).
const MAX_VERSION_DIGITS: usize = 19;

/// A command: which aggregate it is for, and its payload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// The aggregate's id: 1 to 256 characters with no control characters (the
    /// stream is `<aggregate type>-<id>`).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    aggregate_id: String,
    /// The command's fields, as the handler defines them: a JSON object nesting at most
    /// 64 levels deep. Fields the handler does not accept are refused by it with 422
    /// `validation_failed`.
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
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = r"^[!-~](?:[\t -~]{0,253}[!-~])?$", description = "1 to 255 visible ASCII characters (spaces and tabs only inside). Sent again with the same key, the command returns its first result and appends nothing"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(?:[0-9]{1,19}|"[0-9]{1,19}")$"#, description = "The stream version the client expects, 1 to 19 digits, bare or in double quotes as the ETag gives it, e.g. \"3\"; a mismatch is 409"),
        ("Tessera-Principal" = Option<String>, Header, nullable = false, pattern = r"^(?:[!-~](?:[\t -~]*[!-~])?)?$", description = "The caller's identity (visible ASCII), as an authenticating proxy vouches for it; only when the host does not authenticate callers (with authentication on, it is refused with 400)"),
    ),
    request_body = CommandBody,
    responses(
        (status = 200, description = "Appended (or replayed)", body = CommandResponse, headers(
            ("ETag" = StreamVersionTag, description = "The stream's version after the command, quoted: send it back as If-Match"),
            ("Tessera-Position" = u64, description = "The global position of the last event appended: send it as Tessera-Min-Position to read this write"),
            ("Idempotent-Replayed" = Replayed, description = "Present when the answer is the first result of an earlier command with the same Idempotency-Key"),
            ("Tessera-Inline" = InlineLagging, description = "Present when the inline projections did not apply the events before the response went out"),
        )),
        (status = 400, description = "Malformed request (bad_request): the body is not JSON of the CommandBody shape, the payload is not an object or nests deeper than 64 levels, the aggregate id is empty, longer than 256 characters or holds control characters, or a header does not have its format; or, with authentication on, Tessera-Principal is sent", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing, malformed, expired, for another audience or issuer, or does not verify (unauthorized; details.reason says which); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "No handler for the command (unknown_command), or the handler says the target does not exist (not_found)", body = ErrorBody),
        (status = 409, description = "If-Match names another version (conflict; details: stream, expected, actual)", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON (unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The handler refused the payload (validation_failed, details per field) or the command (rejected, details.reason), or the Idempotency-Key was used for another command (idempotency_mismatch)", body = ErrorBody),
        (status = 500, description = "The plugin failed (plugin_failed) or the event store did (store_failed)", body = ErrorBody),
        (status = 503, description = "Too contended to append after retries (contended), the event store's database cannot be reached (store_unavailable), or the host is shutting down (shutting_down)", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline (deadline_exceeded)", body = ErrorBody),
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
    headers.insert("etag", StreamVersionTag(commit.stream_version).header());
    headers.insert("tessera-position", HeaderValue::from(commit.position));
    if replayed {
        headers.insert("idempotent-replayed", Replayed::True.header());
    }
    if !inline_current {
        headers.insert("tessera-inline", InlineLagging::Lagging.header());
    }
    Ok(response)
}

/// `If-Match: "<version>"` (quotes optional): the stream version the client expects,
/// 1 to [`MAX_VERSION_DIGITS`] digits, exactly as the description's pattern says.
fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = text_header(headers, "if-match")? else {
        return Ok(None);
    };
    let digits = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(&value);
    let well_formed = (1..=MAX_VERSION_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed
        .then(|| digits.parse::<u64>().ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "If-Match must be a stream version such as \"3\" (1 to {MAX_VERSION_DIGITS} digits), not {value:?}"
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

/// The `ETag` of a command's response: the stream's version in double quotes, which
/// `If-Match` takes back.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(value_type = String, pattern = r#"^"[0-9]+"$"#)]
pub struct StreamVersionTag(u64);

impl StreamVersionTag {
    fn header(self) -> HeaderValue {
        HeaderValue::from_str(&format!("\"{}\"", self.0))
            .expect("digits in quotes are a valid header value")
    }
}

/// The one value of `Idempotent-Replayed`.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Replayed {
    True,
}

impl Replayed {
    fn header(self) -> HeaderValue {
        match self {
            Replayed::True => HeaderValue::from_static("true"),
        }
    }
}

/// The one value of `Tessera-Inline`.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum InlineLagging {
    Lagging,
}

impl InlineLagging {
    fn header(self) -> HeaderValue {
        match self {
            InlineLagging::Lagging => HeaderValue::from_static("lagging"),
        }
    }
}
