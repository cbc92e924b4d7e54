//! The HTTP API (axum). Only this module knows status codes and headers; it turns
//! requests into calls on the command bus and the event store, and their errors into
//! the JSON error contract of [`error`].

mod commands;
mod error;
mod events;
mod extract;
mod plugins;
mod projections;
mod queries;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;
use tracing::Instrument;

use crate::command_bus::CommandBus;
use crate::event_store::EventStore;
use crate::plugin::Plugins;
use crate::projection::Projections;
use crate::query::Queries;

pub use error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub bus: Arc<CommandBus>,
    pub plugins: Arc<Plugins>,
    pub projections: Arc<Projections>,
    pub queries: Arc<Queries>,
    /// The admin endpoints' bearer token; none: loopback only.
    pub admin_token: Option<Arc<str>>,
}

/// The full API.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route(
            "/plugins/{name}",
            put(plugins::deploy)
                .delete(plugins::remove)
                .layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN_BYTES)),
        )
        .route("/plugins/{name}/rollback", post(plugins::rollback))
        .route("/projections/{name}/promote", post(projections::promote))
        .route("/projections/{name}/rollback", post(projections::rollback))
        .route("/projections/{name}/rebuild", post(projections::rebuild))
        .route("/projections/{name}/resume", post(projections::resume))
        .route(
            "/projections/{name}/versions/{version}",
            delete(projections::retire),
        )
        .route("/projections/{name}/policy", put(projections::set_policy))
        .route(
            "/projections/{name}/parked/{position}/retry",
            post(projections::retry_parked),
        )
        .route(
            "/projections/{name}/parked/{position}",
            delete(projections::drop_parked),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            plugins::require_admin,
        ));
    Router::new()
        .merge(admin)
        .route("/commands/{command}", post(commands::execute))
        .route("/streams/{stream}", get(events::stream))
        .route("/events", get(events::log))
        .route("/queries", get(queries::list))
        .route("/queries/{name}", get(queries::get).post(queries::post))
        .route("/projections", get(projections::list))
        .route("/projections/{name}/policy", get(projections::get_policy))
        .route("/projections/{name}/parked", get(projections::parked))
        .route("/plugins", get(plugins::list))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Gives every request an id, echoed in `x-request-id` and in error bodies.
async fn request_id(request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let span = tracing::debug_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = error::REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let head = *state.store.head().borrow();
    axum::Json(json!({ "status": "ok", "head": head }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
