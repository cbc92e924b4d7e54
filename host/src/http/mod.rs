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
use axum::routing::get;
use serde_json::json;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The full API, with its OpenAPI description served at `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = api(state.clone()).split_for_parts();
    let openapi: Arc<str> =
        Arc::from(serde_json::to_string(&openapi).expect("the OpenAPI description serializes"));
    router
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        openapi.to_string(),
                    )
                }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Every route, each registered together with its OpenAPI description, so that the
/// description cannot miss a route.
fn api(state: AppState) -> OpenApiRouter<AppState> {
    let deploy = OpenApiRouter::new()
        .routes(routes!(plugins::deploy, plugins::remove))
        .layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN_BYTES));
    let admin = OpenApiRouter::new()
        .routes(routes!(plugins::rollback))
        .routes(routes!(projections::promote))
        .routes(routes!(projections::rollback))
        .routes(routes!(projections::rebuild))
        .routes(routes!(projections::resume))
        .routes(routes!(projections::retire))
        .routes(routes!(projections::set_policy))
        .routes(routes!(projections::retry_parked))
        .routes(routes!(projections::drop_parked))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let admin = OpenApiRouter::new().merge(deploy).merge(admin).route_layer(
        middleware::from_fn_with_state(state, plugins::require_admin),
    );
    let public = OpenApiRouter::new()
        .routes(routes!(commands::execute))
        .routes(routes!(events::stream))
        .routes(routes!(events::log))
        .routes(routes!(queries::list))
        .routes(routes!(queries::get, queries::post))
        .routes(routes!(projections::list))
        .routes(routes!(projections::get_policy))
        .routes(routes!(projections::parked))
        .routes(routes!(plugins::list))
        .routes(routes!(health))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin)
        .merge(public)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "A CQRS host whose business logic runs as sandboxed WebAssembly components. Every error is a JSON body {\"error\": {\"code\", \"message\", \"details\"?}, \"request_id\"}."
    ),
    modifiers(&AdminToken),
    tags(
        (name = "commands", description = "The write side"),
        (name = "events", description = "The log"),
        (name = "queries", description = "The read side, with freshness headers"),
        (name = "projections", description = "Read models and their versions"),
        (name = "plugins", description = "Deployment"),
        (name = "health", description = "Liveness"),
    )
)]
struct ApiDoc;

/// Declares the admin endpoints' bearer token.
struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
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

/// Whether the host is up, and the write store's head.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "{\"status\": \"ok\", \"head\": N}")))]
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
