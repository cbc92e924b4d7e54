//! The HTTP side of callers' identity: the guard in front of the routes that act for a
//! caller (commands, queries, the log and its streams), and the [`Identity`] extractor
//! that tells a handler who the caller is.
//!
//! With authentication off (the default) the guard lets everything through and the
//! identity is the `Tessera-Principal` header, as a proxy in front vouches for it.
//! With it on, the guard lets a request through only with a bearer token that
//! `crate::auth` verifies: otherwise 401 `unauthorized` (403 `forbidden` for a
//! verified caller without the required role), with `WWW-Authenticate: Bearer` and
//! the reason in `details.reason`. A request that also sends `Tessera-Principal` is
//! refused with 400: the principal is the token's, and a header that claims another
//! would otherwise be silently dropped from the audit trail it was meant for.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::auth::{AuthError, Caller};
use crate::event_store::Claims;

/// The header through which, with authentication off, a proxy names the caller.
pub const PRINCIPAL_HEADER: &str = "tessera-principal";

/// Lets a request through when the host does not authenticate, or when its bearer
/// token proves a caller, whom it hands on to the handler in the request's extensions.
pub async fn require_caller(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(authenticator) = state.auth.clone() else {
        return next.run(request).await;
    };
    let verified = match request.headers().get(header::AUTHORIZATION) {
        None => authenticator.authenticate(None),
        Some(value) => match value.to_str() {
            Ok(value) => authenticator.authenticate(Some(value)),
            Err(_) => Err(AuthError::Malformed(
                "the Authorization header must be visible ASCII".into(),
            )),
        },
    };
    let refusal = match verified {
        Ok(_) if request.headers().contains_key(PRINCIPAL_HEADER) => ApiError::bad_request(
            "Tessera-Principal is not accepted from callers when the host authenticates them: \
             the principal is the token's subject",
        )
        .into_response(),
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            return next.run(request).await;
        }
        Err(error) => refused(&error),
    };
    // Read what the client is sending before refusing, so that the connection stays
    // usable and the client sees the refusal rather than a reset mid-body.
    let _ = axum::body::to_bytes(request.into_body(), super::extract::DRAIN_AT_MOST).await;
    refusal
}

/// The 401 or 403 answer for `error` (its status and challenge are `http/error.rs`'s).
fn refused(error: &AuthError) -> Response {
    tracing::info!(reason = error.reason(), %error, "caller refused");
    ApiError::from(error).into_response()
}

/// Who the caller of a command is: the verified principal and its claims when the host
/// authenticates, else whatever `Tessera-Principal` says (no claims).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub principal: Option<String>,
    /// The verified claims (a JSON object).
    pub claims: Option<Claims>,
}

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.auth.is_some() {
            // The guard put the caller there; a route without the guard must not
            // fall back to a header anyone can set.
            let caller = parts.extensions.get::<Caller>().ok_or_else(|| {
                ApiError::internal("auth_missing", &"a guarded handler runs without its guard")
            })?;
            let claims = Claims::from_json(caller.claims_json())
                .map_err(|e| ApiError::internal("auth_claims", &e))?;
            return Ok(Identity {
                principal: Some(caller.principal().to_string()),
                claims: Some(claims),
            });
        }
        let principal = parts
            .headers
            .get(PRINCIPAL_HEADER)
            .map(|value| {
                value.to_str().map(str::to_string).map_err(|_| {
                    ApiError::bad_request(format!(
                        "header {PRINCIPAL_HEADER} must be visible ASCII"
                    ))
                })
            })
            .transpose()?;
        Ok(Identity {
            principal,
            claims: None,
        })
    }
}
