//! Reading the log: `GET /streams/{stream}` and `GET /events`.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use crate::event_store::RecordedEvent;

/// Events per page unless the client asks for fewer.
const DEFAULT_LIMIT: usize = 100;
/// The most events one page holds.
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Read events with a version above this one.
    #[serde(default)]
    #[param(format = "uint64", maximum = 18446744073709551615_u64)]
    after_version: u64,
    /// At most this many events (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of one stream's events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamPage {
    stream: String,
    #[schema(value_type = Vec<Object>)]
    events: Vec<RecordedEvent>,
    /// Pass as `after_version` to read on; absent when the page was not full (the end
    /// of the stream was reached).
    next_after_version: Option<u64>,
}

/// A stream's events, oldest first, paged by version.
#[utoipa::path(
    get,
    path = "/streams/{stream}",
    tag = "events",
    params(("stream" = String, Path, description = "e.g. account-42"), StreamQuery),
    responses(
        (status = 200, description = "A page of events", body = StreamPage),
        (status = 400, description = "Bad parameters (bad_request): the stream name is not UTF-8, after_version or limit is not a whole number in its range, or a parameter is repeated or unknown", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized)", body = ErrorBody),
        (status = 403, description = "The caller lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "The stream has no events (unknown_stream)", body = ErrorBody),
        (status = 500, description = "The event store failed (store_failed)", body = ErrorBody),
        (status = 503, description = "The event store's database cannot be reached (store_unavailable), or the host is shutting down (shutting_down)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let events = state
        .store
        .read_stream(&stream, query.after_version, limit)
        .await?;
    if events.is_empty() && query.after_version == 0 {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no events"),
        ));
    }
    let next_after_version = (events.len() == limit)
        .then(|| events.last().map(|e| e.version))
        .flatten();
    Ok(axum::Json(StreamPage {
        stream,
        events,
        next_after_version,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Read events at positions above this one.
    #[serde(default)]
    #[param(format = "uint64", maximum = 18446744073709551615_u64)]
    after: u64,
    /// At most this many events (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of the global log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    #[schema(value_type = Vec<Object>)]
    events: Vec<RecordedEvent>,
    /// Pass as `after` to read on (equal to `after` when the page is empty).
    next_after: u64,
    /// The write store's head when the page was read.
    head: u64,
}

/// The global log after a position, paged.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of the log", body = LogPage),
        (status = 400, description = "Bad parameters (bad_request): after or limit is not a whole number in its range, or a parameter is repeated or unknown", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized)", body = ErrorBody),
        (status = 403, description = "The caller lacks the required role (forbidden)", body = ErrorBody),
        (status = 500, description = "The event store failed (store_failed)", body = ErrorBody),
        (status = 503, description = "The event store's database cannot be reached (store_unavailable), or the host is shutting down (shutting_down)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn log(
    State(state): State<AppState>,
    Query(query): Query<LogQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let head = *state.store.head().borrow();
    let events = state.store.read_all(query.after, limit).await?;
    let next_after = events.last().map_or(query.after, |e| e.position);
    Ok(axum::Json(LogPage {
        head: head.max(next_after),
        events,
        next_after,
    }))
}

fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
        Some(limit) if limit > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LIMIT}"
        ))),
        Some(limit) => Ok(limit),
    }
}
