//! The HTTP API (axum). Only this module knows status codes and headers; it turns
//! requests into calls on the command bus and the event store, and their errors into
//! the JSON error contract of [`error`].

mod auth;
mod commands;
mod dashboard;
mod error;
mod events;
mod extract;
mod layers;
mod metrics;
mod operations;
mod plugins;
mod projections;
mod queries;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
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

/// What the handlers share, behind one `Arc`: axum clones the state for every request,
/// and one reference count costs less than one per service (and a copy of the path).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The services and settings behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn EventStore>,
    pub bus: Arc<CommandBus>,
    pub plugins: Arc<Plugins>,
    pub projections: Arc<Projections>,
    pub queries: Arc<Queries>,
    /// The admin endpoints' bearer token; none: loopback only.
    pub admin_token: Option<Arc<str>>,
    /// Verifies callers' tokens on the routes that act for a caller; none:
    /// authentication is off.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// The process's metrics recorder, rendered at `GET /metrics`; none: metrics off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The host's data folder (what `POST /admin/backup` copies).
    pub data_dir: std::path::PathBuf,
    /// Cancelled when the host starts shutting down: event streams end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The full API, with its OpenAPI description served at `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = api(state.clone()).split_for_parts();
    let openapi: Arc<str> =
        Arc::from(serde_json::to_string(&openapi).expect("the OpenAPI description serializes"));
    let router = router
        .merge(dashboard::routes())
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
        .method_not_allowed_fallback(method_not_allowed);
    layers::wrap(router).with_state(state)
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
        .routes(routes!(operations::backup))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let admin = OpenApiRouter::new().merge(deploy).merge(admin).route_layer(
        middleware::from_fn_with_state(state.clone(), plugins::require_admin),
    );
    // The routes that act for a caller or show what callers wrote: with
    // authentication on, only for a verified caller (README, "Callers' identity").
    let guarded = OpenApiRouter::new()
        .routes(routes!(commands::execute))
        .routes(routes!(events::stream))
        .routes(routes!(stream::follow_log))
        .routes(routes!(events::log))
        .routes(routes!(queries::get, queries::post))
        .routes(routes!(projections::parked))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(state, auth::require_caller));
    let public = OpenApiRouter::new()
        .routes(routes!(queries::list))
        .routes(routes!(projections::list))
        .routes(routes!(projections::get_policy))
        .routes(routes!(plugins::list))
        .routes(routes!(health))
        .routes(routes!(operations::ready))
        .routes(routes!(metrics::scrape))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin)
        .merge(guarded)
        .merge(public)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "A CQRS host whose business logic runs as sandboxed WebAssembly components. Every error is a JSON body {\"error\": {\"code\", \"message\", \"details\"?}, \"request_id\"}."
    ),
    modifiers(&AdminToken, &CallerToken),
    // The schemas of response headers and of the event stream's events: the routes'
    // registrations collect only the schemas that derive them.
    components(schemas(
        commands::StreamVersionTag,
        commands::Replayed,
        commands::InlineLagging,
        queries::CacheOutcome,
        stream::StreamedEvent,
    )),
    tags(
        (name = "commands", description = "The write side"),
        (name = "events", description = "The log"),
        (name = "queries", description = "The read side, with freshness headers"),
        (name = "projections", description = "Read models and their versions"),
        (name = "plugins", description = "Deployment"),
        (name = "health", description = "Liveness and readiness"),
        (name = "operations", description = "Backups"),
        (name = "metrics", description = "Prometheus metrics"),
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

/// Declares the callers' bearer token (a JWT or an API key), which the routes that act
/// for a caller need when the host authenticates callers.
struct CallerToken;

impl utoipa::Modify for CallerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "caller",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT (--auth jwt) or an API key (--auth api-keys); needed only when the host authenticates callers",
                    ))
                    .build(),
            ),
        );
    }
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
