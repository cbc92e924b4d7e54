//! `GET /metrics`: the host's metrics in the Prometheus text format (version 0.0.4).
//!
//! The gauges that cost nothing to compute from what the host already tracks (the
//! head, the write store's size, each projection version's lag, parked events and
//! progress) are set here, at scrape time, rather than on the hot path; everything else
//! was recorded where it happened (see `crate::metrics`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The host's metrics for Prometheus to scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Every metric family in the Prometheus text format (see docs/metrics.md)", body = String, content_type = "text/plain"),
        (status = 404, description = "The host runs with metrics off (--no-metrics): metrics_disabled", body = ErrorBody),
    )
)]
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics.clone() else {
        return Err(ApiError::not_found(
            "metrics_disabled",
            "this host runs with metrics off (--no-metrics)",
        ));
    };
    let head = *state.store.head().borrow();
    let store = state.store.clone();
    let projections = state.projections.status();
    // A stat of the store's files and the rendering are blocking, if short.
    let body = tokio::task::spawn_blocking(move || {
        crate::metrics::scraped(head, store.disk_bytes(), &projections);
        handle.render()
    })
    .await
    .map_err(|e| ApiError::internal("metrics_failed", &e))?;
    Ok(([(CONTENT_TYPE, TEXT_FORMAT)], body).into_response())
}
