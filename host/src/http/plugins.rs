//! Plugin administration: `GET /plugins`, and behind the admin guard
//! `PUT /plugins/{name}`, `DELETE /plugins/{name}`, `POST /plugins/{name}/rollback`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Body, Path};

/// The largest `.wasm` accepted by a deploy. Components made by componentize-js or
/// componentize-py weigh 10-20 MB.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// Every plugin file: status, description, digest, load time, last error, and the
/// compiles in progress (a file whose new content is compiling, a deploy not yet
/// answered).
#[utoipa::path(get, path = "/plugins", tag = "plugins", responses((status = 200, description = "The plugin listing: per file its status (active, stale, failed, or compiling while nothing from it serves yet), what it serves, and compiling_since while new content for it compiles")))]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({ "plugins": state.plugins.listing().await }))
}

/// Deploys a plugin: checked first, then written to the plugins folder and served.
#[utoipa::path(
    put,
    path = "/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name, as its describe says")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses(
        (status = 200, description = "Served; the listing entry"),
        (status = 400, description = "The name is not UTF-8, or the body could not be read (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 409, description = "It claims a command or query another plugin serves (plugin_conflict), or it loaded but is not served (not_served)", body = ErrorBody),
        (status = 413, description = "The component is larger than 64 MiB (payload_too_large)", body = ErrorBody),
        (status = 422, description = "Not a plugin this host can serve, or its describe names another plugin (invalid_plugin)", body = ErrorBody),
        (status = 500, description = "The plugins folder could not be written (deploy_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn deploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    state.plugins.deploy(&name, body.to_vec()).await?;
    tracing::info!(plugin = %name, "plugin deployed");
    entry(&state, &name).await
}

/// Stops serving a plugin and removes its file.
#[utoipa::path(
    delete,
    path = "/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, example = "bank-account", description = "The plugin's name, as GET /plugins lists it")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such plugin (unknown_plugin)", body = ErrorBody),
        (status = 500, description = "Its file could not be removed (deploy_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.plugins.remove(&name).await?;
    tracing::info!(plugin = %name, "plugin removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Serves again the version served before the current one.
#[utoipa::path(
    post,
    path = "/plugins/{name}/rollback",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Rolled back; the listing entry"),
        (status = 400, description = "The name is not UTF-8 (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 404, description = "No such plugin (unknown_plugin)", body = ErrorBody),
        (status = 409, description = "No earlier version (no_previous_version), it claims a command or query another plugin now serves (plugin_conflict), or it loaded but is not served (not_served)", body = ErrorBody),
        (status = 422, description = "The earlier version no longer loads in this host (invalid_plugin)", body = ErrorBody),
        (status = 500, description = "The plugins folder could not be written (deploy_failed)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.plugins.rollback(&name).await?;
    tracing::info!(plugin = %name, "plugin rolled back");
    entry(&state, &name).await
}

/// The listing entry of the file serving `name`.
async fn entry(state: &AppState, name: &str) -> Result<Response, ApiError> {
    let listing = state.plugins.listing().await;
    let entry = listing
        .into_iter()
        .find(|entry| entry.plugin.as_ref().is_some_and(|p| p.name == name))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_served",
                format!("plugin {name} loaded but is not served; see GET /plugins"),
            )
        })?;
    Ok(axum::Json(entry).into_response())
}

/// Lets a request through to an admin endpoint only with the admin bearer token, or,
/// when no token is configured, only from the loopback interface.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allowed = match &state.admin_token {
        Some(token) => request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback()),
    };
    if !allowed {
        // Read what the client is sending before refusing, so the connection stays
        // usable and the client sees the 401 instead of a connection closed mid-upload.
        let _ = axum::body::to_bytes(request.into_body(), super::extract::DRAIN_AT_MOST).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            match state.admin_token {
                Some(_) => "this endpoint needs the admin token: Authorization: Bearer <token>",
                None => "no admin token is configured, so this endpoint answers only on loopback",
            },
        ));
    }
    Ok(next.run(request).await)
}

/// Compares in constant time (`subtle`), so the time taken says nothing about the
/// token but its length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
