//! The live dashboard: `GET /` and `GET /ui` serve one page, `GET /ui/app.js` and
//! `GET /ui/style.css` its script and style sheet.
//!
//! The three files are compiled into the binary (`include_str!`), so the page works on
//! a host with no network and no build step: the script reads the same JSON endpoints
//! a client would (`/plugins`, `/projections`, `/events`, `/events/stream`, `/metrics`)
//! and draws its charts itself. Guarantees: each file is served with its content type,
//! an `ETag` of its content and `Cache-Control: no-cache`, so a browser revalidates
//! (a cheap `304`) and never keeps a page older than the binary serving it; a content
//! security policy keeps the page from loading or sending anything outside this host.
//! These routes are the host's user interface, not its API: they are left out of the
//! OpenAPI description.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file and the headers it is served with.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        let digest = hex::encode(&Sha256::digest(body.as_bytes())[..12]);
        Asset {
            body,
            content_type,
            etag: HeaderValue::from_str(&format!("\"{digest}\"")).expect("a hex ETag is ASCII"),
        }
    }

    /// The file, or `304 Not Modified` when the browser already holds this content.
    fn serve(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|tag| tag.trim() == "*" || tag.trim() == self.etag)
            });
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ];
        if fresh {
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            (headers, self.body).into_response()
        }
    }
}

/// Only this host's own files and endpoints: no CDN, no font service, no beacon; the
/// page cannot be framed by another site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/style.css"),
        "text/css; charset=utf-8",
    )
});

/// The dashboard's routes, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
}

async fn index(headers: HeaderMap) -> Response {
    INDEX.serve(&headers)
}

async fn script(headers: HeaderMap) -> Response {
    SCRIPT.serve(&headers)
}

async fn style(headers: HeaderMap) -> Response {
    STYLE.serve(&headers)
}
