//! The layers every request goes through, outermost first: a request id (tower-http's
//! `SetRequestId`, echoed by `PropagateRequestId` in `x-request-id`), a trace span that
//! carries it, the scope that lets error bodies, plugin log lines and events' metadata
//! name the id, and inside it a panic catcher that answers with the JSON error body.
//!
//! A client (or a proxy in front of the host) may send its own `x-request-id` so that
//! its logs and the host's meet; one that is not a short token of visible characters is
//! replaced by a fresh UUID, because the id lands in logs and in the event log.

use std::any::Any;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Response, StatusCode};
use axum::middleware::{self, Next};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::error::current_request_id;

/// The longest request id accepted from a client.
const MAX_CLIENT_ID: usize = 128;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the layers above.
pub(super) fn wrap<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // `Router::layer` wraps what is already there, so the innermost layer comes first.
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(scope_id))
        .layer(TraceLayer::new_for_http().make_span_with(span_for))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(
            X_REQUEST_ID.clone(),
            MakeRequestUuid,
        ))
        .layer(middleware::map_request(drop_unusable_id))
}

/// Removes a client's request id that is empty, too long or not plain visible ASCII,
/// so that `SetRequestId` makes a fresh one.
async fn drop_unusable_id(mut request: Request) -> Request {
    let usable = request
        .headers()
        .get(&X_REQUEST_ID)
        .map(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_CLIENT_ID
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or(true);
    if !usable {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

fn request_id_of(request: &Request) -> String {
    request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown")
        .to_string()
}

/// At debug level: the request id reaches log lines through [`crate::request_id`],
/// so no span needs to be built per request at the default level.
fn span_for(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        request_id = %request_id_of(request),
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Makes the id available to code that has no request at hand (error bodies, the
/// command bus); it is the same id the response carries in `x-request-id`.
async fn scope_id(request: Request, next: Next) -> axum::response::Response {
    let id = request_id_of(&request);
    crate::request_id::scope(std::sync::Arc::from(id), next.run(request)).await
}

/// A handler that panicked: a host bug. The client gets the JSON error body with the
/// request id to quote; the process goes on serving. It runs inside [`scope_id`].
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let request_id = current_request_id();
    let reason = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(%request_id, %reason, "a request handler panicked");
    let body = json!({
        "error": {
            "code": "internal",
            "message": format!("the request failed inside the host; quote request id {request_id}"),
        },
        "request_id": request_id,
    });
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a static response builds")
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    async fn call(request: Request<Body>) -> (u16, Option<String>, serde_json::Value) {
        let router: Router = super::wrap(
            Router::new()
                .route("/boom", get(boom))
                .route("/fine", get(|| async { "fine" })),
        );
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().expect("ASCII").to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, id, body)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_with_the_json_error_body_and_its_request_id() {
        let (status, id, body) = call(Request::get("/boom").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 500);
        let id = id.expect("an x-request-id");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert_eq!(body["request_id"], serde_json::json!(id), "{body}");
        assert!(!body.to_string().contains("boom"), "leaked: {body}");
    }

    #[tokio::test]
    async fn a_usable_client_id_is_kept_and_an_unusable_one_replaced() {
        let kept = Request::get("/fine")
            .header("x-request-id", "trace-1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(kept).await.1.as_deref(), Some("trace-1"));
        for bad in ["", "has space", &"x".repeat(129)] {
            let request = Request::get("/fine")
                .header("x-request-id", bad)
                .body(Body::empty())
                .unwrap();
            let id = call(request).await.1.expect("an id");
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} gave {id:?}");
        }
    }
}
