//! `GET|POST /queries/{name}`, `GET /queries`, `GET /projections`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use crate::query::Answer;

/// How long a query waits for `Tessera-Min-Position` unless the client says otherwise.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);
/// The longest a client may ask a query to wait.
const LONGEST_MAX_WAIT: Duration = Duration::from_secs(60);

/// Answers a query; the query string is its parameters.
#[utoipa::path(
    get,
    path = "/queries/{name}",
    tag = "queries",
    params(
        ("name" = String, Path, description = "The query's name"),
        ("Tessera-Min-Position" = Option<u64>, Header, nullable = false, format = "uint64", maximum = 18446744073709551615_u64, description = "A log position (a whole number, from a command response's Tessera-Position): answer only once the read models reached it"),
        ("Tessera-Max-Wait" = Option<u64>, Header, nullable = false, format = "uint64", maximum = 18446744073709551615_u64, description = "How long to wait for Tessera-Min-Position, in milliseconds (a whole number; default 5000; more than 60000 waits 60000)"),
    ),
    responses(
        (status = 200, description = "The handler's JSON answer", headers(
            ("Tessera-Position" = u64, description = "The lowest log position the read models it read had reached"),
            ("Tessera-Head" = u64, description = "The log's head when the query was answered"),
            ("Tessera-Cache" = CacheOutcome, description = "Whether the answer came from the cache"),
        )),
        (status = 400, description = "Malformed request (bad_request): the query string does not decode, or a header does not have its format", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized; details.reason says why); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "No such query (unknown_query), or the handler says the target does not exist (not_found)", body = ErrorBody),
        (status = 422, description = "The handler refused the parameters (validation_failed, details per field) or the query (rejected, details.reason)", body = ErrorBody),
        (status = 500, description = "The plugin failed (plugin_failed)", body = ErrorBody),
        (status = 503, description = "The read models did not reach Tessera-Min-Position within Tessera-Max-Wait (stale; details: min_position, position), a projection it reads has no version that can answer yet (projection_unavailable), or the host is shutting down (shutting_down)", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds after which to try again (sent with stale, projection_unavailable, and shutting_down while plugin calls are being ended)"),
        )),
        (status = 504, description = "The plugin ran past its deadline (deadline_exceeded)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let params = params
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    ask(state, name, params, &headers).await
}

/// Answers a query; the JSON object body is its parameters.
#[utoipa::path(
    post,
    path = "/queries/{name}",
    tag = "queries",
    params(
        ("name" = String, Path, description = "The query's name"),
        ("Tessera-Min-Position" = Option<u64>, Header, nullable = false, format = "uint64", maximum = 18446744073709551615_u64, description = "A log position (a whole number, from a command response's Tessera-Position): answer only once the read models reached it"),
        ("Tessera-Max-Wait" = Option<u64>, Header, nullable = false, format = "uint64", maximum = 18446744073709551615_u64, description = "How long to wait for Tessera-Min-Position, in milliseconds (a whole number; default 5000; more than 60000 waits 60000)"),
    ),
    request_body(content = Object, description = "The parameters, as the handler defines them (a JSON object); parameters it does not accept are refused by it with 422 validation_failed"),
    responses(
        (status = 200, description = "The handler's JSON answer", headers(
            ("Tessera-Position" = u64, description = "The lowest log position the read models it read had reached"),
            ("Tessera-Head" = u64, description = "The log's head when the query was answered"),
            ("Tessera-Cache" = CacheOutcome, description = "Whether the answer came from the cache"),
        )),
        (status = 400, description = "Malformed request (bad_request): the body is not a JSON object, or a header does not have its format", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized; details.reason says why); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "No such query (unknown_query), or the handler says the target does not exist (not_found)", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON (unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The handler refused the parameters (validation_failed, details per field) or the query (rejected, details.reason)", body = ErrorBody),
        (status = 500, description = "The plugin failed (plugin_failed)", body = ErrorBody),
        (status = 503, description = "The read models did not reach Tessera-Min-Position within Tessera-Max-Wait (stale; details: min_position, position), a projection it reads has no version that can answer yet (projection_unavailable), or the host is shutting down (shutting_down)", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds after which to try again (sent with stale, projection_unavailable, and shutting_down while plugin calls are being ended)"),
        )),
        (status = 504, description = "The plugin ran past its deadline (deadline_exceeded)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn post(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(params) = body else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of parameters",
        ));
    };
    ask(state, name, params, &headers).await
}

async fn ask(
    state: AppState,
    name: String,
    params: Map<String, Value>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let min_position = number_header(headers, "tessera-min-position")?;
    let max_wait = match number_header(headers, "tessera-max-wait")? {
        Some(ms) => Duration::from_millis(ms).min(LONGEST_MAX_WAIT),
        None => DEFAULT_MAX_WAIT,
    };
    let started = crate::metrics::Started::now();
    let answer = state
        .queries
        .ask(&name, params, min_position, max_wait)
        .await;
    crate::metrics::query(started, &name, &answer);
    Ok(answer_response(answer?))
}

fn answer_response(answer: Answer) -> Response {
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.body.get().to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("tessera-position", HeaderValue::from(answer.position));
    headers.insert("tessera-head", HeaderValue::from(answer.head));
    headers.insert(
        "tessera-cache",
        if answer.cached {
            CacheOutcome::Hit
        } else {
            CacheOutcome::Miss
        }
        .header(),
    );
    response
}

fn number_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("header {name} must be a whole number"))
                })
        })
        .transpose()
}

/// The values of `Tessera-Cache`.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum CacheOutcome {
    /// Answered from the cache.
    Hit,
    /// Answered by the handler.
    Miss,
}

impl CacheOutcome {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        })
    }
}

/// The queries served, with their cache hit and miss counts.
#[utoipa::path(get, path = "/queries", tag = "queries", responses((status = 200, description = "Every query: name, plugin, reads, cache")))]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let catalog = state.plugins.catalog();
    let stats = state.queries.cache_stats();
    let queries: Vec<Value> = catalog
        .queries()
        .into_iter()
        .map(|(name, route)| {
            let cache = stats.get(name);
            json!({
                "name": name,
                "plugin": route.plugin,
                "reads": route.reads,
                "cache": {
                    "hits": cache.map_or(0, |c| c.hits),
                    "misses": cache.map_or(0, |c| c.misses),
                },
            })
        })
        .collect();
    axum::Json(json!({ "queries": queries }))
}
