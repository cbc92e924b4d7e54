//! The HTTP error contract: every failure is a JSON body
//! `{"error": {"code", "message", "details"?}, "request_id"}` with a status that says
//! whose fault it is. This is the one place where domain errors meet status codes.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::AuthError;
use crate::backup::BackupError;
use crate::command_bus::CommandError;
use crate::event_store::StoreError;
use crate::plugin::{BatchError, CallError, DeployError, Refusal};
use crate::projection::{LifecycleError, ParkedError};
use crate::query::QueryError;

/// The body of every error response (for the OpenAPI description).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// Quote it when reporting a problem: the host's logs carry it.
    pub request_id: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `validation_failed`.
    pub code: String,
    pub message: String,
    /// Per-field messages, the refused rule, the conflicting versions...
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge of a 401 or 403.
    challenge: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// Tells the client when to try again, in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn payload_too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of the host or a plugin: the client gets the request id to quote,
    /// the log gets the reason.
    pub(super) fn internal(code: &'static str, error: &dyn std::fmt::Display) -> Self {
        let request_id = current_request_id();
        tracing::error!(%request_id, %error, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            format!("the request failed inside the host; quote request id {request_id}"),
        )
    }
}

pub(super) fn current_request_id() -> String {
    crate::request_id::current().map_or_else(|| "unknown".to_string(), |id| id.to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let body = json!({ "error": error, "request_id": current_request_id() });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::UnknownCommand(_) => {
                ApiError::not_found("unknown_command", error.to_string())
            }
            CommandError::BadAggregateId(_) => ApiError::bad_request(error.to_string()),
            CommandError::Refused(refusal) => refusal.into(),
            CommandError::Conflict {
                ref stream,
                expected,
                actual,
            } => ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
                .with_details(json!({ "stream": stream, "expected": expected, "actual": actual })),
            CommandError::IdempotencyMismatch(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                error.to_string(),
            ),
            CommandError::Contended { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contended",
                error.to_string(),
            ),
            CommandError::Plugin(error) => error.into(),
            CommandError::Store(error) => error.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::UnknownQuery(_) => ApiError::not_found("unknown_query", error.to_string()),
            QueryError::ProjectionUnavailable(_) => unavailable(error.to_string()),
            QueryError::Stale {
                min_position,
                position,
            } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stale", error.to_string())
                .with_details(json!({ "min_position": min_position, "position": position }))
                .retry_after(1),
            QueryError::Refused(refusal) => refusal.into(),
            QueryError::Plugin(error) => error.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(fields) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request is invalid",
            )
            .with_details(Value::Object(
                fields
                    .into_iter()
                    .map(|(field, message)| (field, Value::String(message)))
                    .collect(),
            )),
            Refusal::Rejected { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message)
                    .with_details(json!({ "reason": code }))
            }
            Refusal::NotFound(message) => ApiError::not_found("not_found", message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::DeadlineExceeded { .. } => {
                tracing::warn!(request_id = %current_request_id(), %error, "plugin deadline");
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    "the plugin ran past its deadline",
                )
            }
            CallError::Trapped { .. } | CallError::BadOutput { .. } => {
                ApiError::internal("plugin_failed", &error)
            }
            CallError::Stopped { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the host is shutting down",
            )
            .retry_after(1),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the host is shutting down",
            ),
            StoreError::Unavailable(_) => {
                tracing::warn!(%error, "the event store's database is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the event store's database cannot be reached; try again later",
                )
                .retry_after(1)
            }
            error => ApiError::internal("store_failed", &error),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        let message = error.to_string();
        let conflict = |code, message| ApiError::new(StatusCode::CONFLICT, code, message);
        match error {
            LifecycleError::UnknownProjection(_) => {
                ApiError::not_found("unknown_projection", message)
            }
            LifecycleError::UnknownVersion { .. } => {
                ApiError::not_found("unknown_version", message)
            }
            LifecycleError::ActiveVersion { .. } => conflict("active_version", message),
            LifecycleError::NoPrevious(_) => conflict("no_previous_version", message),
            LifecycleError::NothingBuilding(_) => conflict("nothing_building", message),
            LifecycleError::NoActiveVersion(_) => conflict("no_active_version", message),
            LifecycleError::CodeUnavailable { .. } => conflict("code_unavailable", message),
            LifecycleError::NotRunning { .. } => unavailable(message),
            LifecycleError::Parked(error) => error.into(),
            LifecycleError::Io(error) => ApiError::internal("lifecycle_failed", &error),
        }
    }
}

impl From<ParkedError> for ApiError {
    fn from(error: ParkedError) -> Self {
        match error {
            ParkedError::Busy => unavailable(error.to_string()),
            ParkedError::NotParked(_) => {
                ApiError::not_found("unknown_parked_event", error.to_string())
            }
            ParkedError::Failed(BatchError::Store(_)) | ParkedError::ReadStore(_) => {
                ApiError::internal("read_store_failed", &error)
            }
            ParkedError::Failed(_) => {
                ApiError::new(StatusCode::CONFLICT, "still_failing", error.to_string())
            }
            ParkedError::MissingEvent(_) => ApiError::internal("event_missing", &error),
            ParkedError::Store(error) => error.into(),
        }
    }
}

/// A projection that cannot serve the request at this moment (starting, being
/// replaced, busy): 503 `projection_unavailable`, to be tried again in a second.
fn unavailable(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "projection_unavailable",
        message,
    )
    .retry_after(1)
}

impl From<BackupError> for ApiError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::Destination(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_destination",
                error.to_string(),
            ),
            BackupError::LogInPostgres => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "backup_unsupported",
                error.to_string(),
            ),
            error => ApiError::internal("backup_failed", &error),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        match error {
            DeployError::Invalid(_) | DeployError::NameMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                error.to_string(),
            ),
            DeployError::NotFound(_) => ApiError::not_found("unknown_plugin", error.to_string()),
            DeployError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "plugin_conflict", error.to_string())
            }
            DeployError::NoPreviousVersion(_) => ApiError::new(
                StatusCode::CONFLICT,
                "no_previous_version",
                error.to_string(),
            ),
            DeployError::Io(error) => ApiError::internal("deploy_failed", &error),
        }
    }
}

impl From<&AuthError> for ApiError {
    /// 401 `unauthorized` with a `Bearer` challenge (RFC 6750), or 403 `forbidden` for
    /// a verified caller without the required role; the reason in `details.reason`.
    fn from(error: &AuthError) -> Self {
        let (status, code, challenge) = if error.is_forbidden() {
            (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Bearer realm=\"tessera\", error=\"insufficient_scope\"",
            )
        } else if matches!(error, AuthError::Missing) {
            (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Bearer realm=\"tessera\"",
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Bearer realm=\"tessera\", error=\"invalid_token\"",
            )
        };
        let mut api = ApiError::new(status, code, error.to_string())
            .with_details(json!({ "reason": error.reason() }));
        api.challenge = Some(challenge);
        api
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            _ => ApiError::bad_request(rejection.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            _ => ApiError::bad_request(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}
