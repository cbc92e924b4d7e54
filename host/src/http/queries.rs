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
        ("Tessera-Min-Position" = Option<u64>, Header, description = "Answer only once the read models reached this log position (from a command response)"),
        ("Tessera-Max-Wait" = Option<u64>, Header, description = "How long to wait for Tessera-Min-Position, in milliseconds (default 5000, at most 60000)"),
    ),
    responses(
        (status = 200, description = "The handler's JSON answer; headers Tessera-Position, Tessera-Head, Tessera-Cache"),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized; details.reason says why); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "unknown_query, or not_found from the handler", body = ErrorBody),
        (status = 422, description = "validation_failed or rejected", body = ErrorBody),
        (status = 500, description = "The plugin failed", body = ErrorBody),
        (status = 503, description = "stale (the read models did not reach Tessera-Min-Position in time) or projection_unavailable; see Retry-After", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
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
        ("Tessera-Min-Position" = Option<u64>, Header, description = "Answer only once the read models reached this log position (from a command response)"),
        ("Tessera-Max-Wait" = Option<u64>, Header, description = "How long to wait for Tessera-Min-Position, in milliseconds (default 5000, at most 60000)"),
    ),
    request_body(content = Object, description = "The parameters"),
    responses(
        (status = 200, description = "The handler's JSON answer; headers Tessera-Position, Tessera-Head, Tessera-Cache"),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized; details.reason says why); WWW-Authenticate: Bearer", body = ErrorBody),
        (status = 403, description = "The caller is verified but lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "unknown_query, or not_found from the handler", body = ErrorBody),
        (status = 422, description = "validation_failed or rejected", body = ErrorBody),
        (status = 500, description = "The plugin failed", body = ErrorBody),
        (status = 503, description = "stale (the read models did not reach Tessera-Min-Position in time) or projection_unavailable; see Retry-After", body = ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = ErrorBody),
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
        HeaderValue::from_static(if answer.cached { "hit" } else { "miss" }),
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
