//! Projection lifecycle: `GET /projections` and, behind the admin guard, promote,
//! rollback, retire, rebuild, resume, policies and parked events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use crate::projection::{Cutover, OnFailure, Policy};

/// Every projection version: role, status, checkpoint, head, lag, progress, errors.
#[utoipa::path(get, path = "/projections", tag = "projections", responses((status = 200, description = "The projection versions")))]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({ "projections": state.projections.status() }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PromoteQuery {
    /// The schema version to make active (default: the one being built).
    #[param(format = "uint32", maximum = 4294967295_u32)]
    version: Option<u32>,
}

/// Makes a version (default: the one being built) active now.
#[utoipa::path(
    post,
    path = "/projections/{name}/promote",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name"), PromoteQuery),
    responses(
        (status = 200, description = "The active version"),
        (status = 400, description = "The projection's name is not UTF-8, or version is not a whole number in its range or another parameter is given (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection) or version (unknown_version)", body = ErrorBody),
        (status = 409, description = "No version given and none is being built (nothing_building)", body = ErrorBody),
        (status = 500, description = "The rebuilt generation it replaces could not be deleted (lifecycle_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PromoteQuery>,
) -> Result<Response, ApiError> {
    let key = state.projections.promote(&name, query.version).await?;
    Ok(axum::Json(json!({ "name": name, "active": key })).into_response())
}

/// Makes the previously active version active again.
#[utoipa::path(
    post,
    path = "/projections/{name}/rollback",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 200, description = "The active version"),
        (status = 400, description = "The projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
        (status = 409, description = "No previously active version (no_previous_version)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let key = state.projections.rollback(&name).await?;
    Ok(axum::Json(json!({ "name": name, "active": key })).into_response())
}

/// Stops a version that is not active and deletes its storage.
#[utoipa::path(
    delete,
    path = "/projections/{name}/versions/{version}",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name"), ("version" = u32, Path, format = "uint32", maximum = 4294967295_u32, description = "The schema version")),
    responses(
        (status = 204, description = "Retired"),
        (status = 400, description = "The projection's name is not UTF-8, or version is not a whole number in its range (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection) or version (unknown_version)", body = ErrorBody),
        (status = 409, description = "The version is active (active_version)", body = ErrorBody),
        (status = 500, description = "Its storage could not be deleted (lifecycle_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn retire(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    state.projections.retire(&name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rebuilds the active version into fresh storage; it takes over when caught up.
#[utoipa::path(
    post,
    path = "/projections/{name}/rebuild",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 202, description = "Building"),
        (status = 400, description = "The projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
        (status = 409, description = "It has no active version to rebuild (no_active_version), or its code is no longer at hand (code_unavailable)", body = ErrorBody),
        (status = 500, description = "The fresh storage could not be prepared (lifecycle_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn rebuild(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let catalog = state.plugins.catalog();
    let key = state.projections.rebuild(&name, &catalog).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "name": name, "building": key })),
    )
        .into_response())
}

/// Resumes a projection halted at a failing event.
#[utoipa::path(
    post,
    path = "/projections/{name}/resume",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 204, description = "Resumed"),
        (status = 400, description = "The projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
        (status = 503, description = "A worker of it stopped meanwhile (projection_unavailable)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.projections.resume(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The projection's policies.
#[utoipa::path(
    get,
    path = "/projections/{name}/policy",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 200, description = "The policies", body = Policy),
        (status = 400, description = "The projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
    ),
)]
pub async fn get_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(state.projections.policy(&name)?).into_response())
}

/// A policy change: fields left out (or null) keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    cutover: Option<Cutover>,
    on_failure: Option<OnFailure>,
    /// Attempts at one event before `on_failure` applies.
    #[schema(minimum = 1, format = "uint32", maximum = 4294967295_u32)]
    #[serde(default, deserialize_with = "whole_number")]
    max_attempts: Option<u32>,
}

/// A whole number as JSON Schema reads `integer`: `5` and `5.0` alike, since JSON says
/// they are the same number; `5.5` and numbers out of range are refused.
fn whole_number<'de, D>(deserializer: D) -> Result<Option<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match number.as_u64() {
        Some(value) => Some(value),
        None => number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(value))
            .map(|value| value as u64),
    };
    whole
        .and_then(|value| u32::try_from(value).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "max_attempts must be a whole number from 1 to {}, not {number}",
                u32::MAX
            ))
        })
}

/// Changes the projection's policies; fields left out keep their value.
#[utoipa::path(
    put,
    path = "/projections/{name}/policy",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    request_body = PolicyChange,
    responses(
        (status = 200, description = "The new policies", body = Policy),
        (status = 400, description = "The body is not JSON of the PolicyChange shape, or the projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON (unsupported_media_type)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(change): Json<PolicyChange>,
) -> Result<Response, ApiError> {
    let current = state.projections.policy(&name)?;
    let policy = Policy {
        cutover: change.cutover.unwrap_or(current.cutover),
        on_failure: change.on_failure.unwrap_or(current.on_failure),
        max_attempts: change.max_attempts.unwrap_or(current.max_attempts),
    };
    if policy.max_attempts == 0 {
        return Err(ApiError::bad_request("max_attempts must be at least 1"));
    }
    state.projections.set_policy(&name, policy).await?;
    Ok(axum::Json(policy).into_response())
}

/// The events the active version parked, with their errors.
#[utoipa::path(
    get,
    path = "/projections/{name}/parked",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name")),
    responses(
        (status = 200, description = "The parked events"),
        (status = 400, description = "The projection's name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid (unauthorized)", body = ErrorBody),
        (status = 403, description = "The caller lacks the required role (forbidden)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection)", body = ErrorBody),
        (status = 409, description = "It has no active version (no_active_version)", body = ErrorBody),
        (status = 500, description = "Its database could not be read (read_store_failed)", body = ErrorBody),
        (status = 503, description = "Its active version is not running yet, or is being replaced (projection_unavailable)", body = ErrorBody),
    ),
    security((), ("caller" = []))
)]
pub async fn parked(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let parked = state.projections.parked(&name)?;
    Ok(axum::Json(json!({ "name": name, "parked": parked })).into_response())
}

/// Applies a parked event again; on success it leaves the list.
#[utoipa::path(
    post,
    path = "/projections/{name}/parked/{position}/retry",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name"), ("position" = u64, Path, format = "uint64", maximum = 18446744073709551615_u64, description = "The event's log position")),
    responses(
        (status = 204, description = "Applied"),
        (status = 400, description = "The projection's name is not UTF-8, or position is not a whole number in its range (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection), or no event parked at that position (unknown_parked_event)", body = ErrorBody),
        (status = 409, description = "It failed again and stays parked (still_failing), or the projection has no active version (no_active_version)", body = ErrorBody),
        (status = 500, description = "The projection's database or the log failed (read_store_failed, store_failed), or the log no longer holds the event (event_missing)", body = ErrorBody),
        (status = 503, description = "The active version is not running right now, or its database is busy (projection_unavailable)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn retry_parked(
    State(state): State<AppState>,
    Path((name, position)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    state.projections.retry_parked(&name, position).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Forgets a parked event.
#[utoipa::path(
    delete,
    path = "/projections/{name}/parked/{position}",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name"), ("position" = u64, Path, format = "uint64", maximum = 18446744073709551615_u64, description = "The event's log position")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 400, description = "The projection's name is not UTF-8, or position is not a whole number in its range (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such projection (unknown_projection), or no event parked at that position (unknown_parked_event)", body = ErrorBody),
        (status = 409, description = "The projection has no active version (no_active_version)", body = ErrorBody),
        (status = 500, description = "The projection's database failed (read_store_failed)", body = ErrorBody),
        (status = 503, description = "The active version is not running right now, or its database is busy (projection_unavailable)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn drop_parked(
    State(state): State<AppState>,
    Path((name, position)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    if !state.projections.drop_parked(&name, position).await? {
        return Err(ApiError::not_found(
            "unknown_parked_event",
            format!("{name} has no parked event at position {position}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
