//! Operations: `GET /ready` (readiness, beside `/health`'s liveness) and, behind the
//! admin guard, `POST /admin/backup` (an online copy of the data folder).

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::backup::BackupReport;
use crate::projection::State as ProjectionState;

/// A live projection applying the newest events is behind the head by a group commit
/// or two under load; within this many events it still counts as caught up, so that
/// readiness does not flap with the load (a restart or a new version catching up is
/// far more behind than this).
const READY_LAG: u64 = 1000;

/// Whether the host can serve its traffic: the plugins folder was loaded (the host
/// loads it before it listens, so any answer implies it) and every active projection
/// version is live, so queries answer fresh data.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "{\"status\": \"ready\"}"),
        (status = 503, description = "Not ready (not_ready): `details.projections` lists each active projection version that is not caught up (starting, catching up, failed, halted or stopped) with its status and lag", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds after which to ask again"),
        )),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let statuses = state.projections.status();
    let mut waiting = Vec::new();
    let mut active = BTreeSet::new();
    for status in statuses.iter().filter(|s| s.role == "active") {
        active.insert(status.name.as_str());
        let caught_up = !status.halted
            && match status.status {
                ProjectionState::Live => true,
                ProjectionState::CatchingUp => status.lag_events <= READY_LAG,
                _ => false,
            };
        if !caught_up {
            waiting.push(json!({
                "projection": status.name,
                "version": status.version,
                "generation": status.generation,
                "status": status.status,
                "lag_events": status.lag_events,
                "halted": status.halted,
                "error": status.error,
            }));
        }
    }
    // A projection with versions but none active yet (its first version is still
    // being set up) cannot answer queries either.
    let known: BTreeSet<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    for name in known.difference(&active) {
        waiting.push(json!({ "projection": name, "status": "no_active_version" }));
    }
    if waiting.is_empty() {
        return Ok(axum::Json(json!({ "status": "ready" })));
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!(
            "{} active projection version(s) not caught up; see details and GET /projections",
            waiting.len()
        ),
    )
    .with_details(json!({ "projections": waiting }))
    .retry_after(1))
}

/// Where to write a backup.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// An absolute path on the host's machine, to a folder that does not exist or is
    /// empty.
    dest: String,
}

/// One backup at a time: two into one folder would interleave, and each costs a
/// database read per file.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Copies the event log, every read model, the projections' lifecycle, the plugin
/// archive and the plugins folder into `dest`, online: commands keep being served.
#[utoipa::path(
    post,
    path = "/admin/backup",
    tag = "operations",
    request_body = BackupRequest,
    responses(
        (status = 200, description = "Written: the copied log's position and every file; serve it with `tessera serve --data <data_dir> --plugins <plugins_dir>`", body = BackupReport),
        (status = 400, description = "dest is missing, relative, a file, or a folder that is not empty (bad_destination), or the body is malformed (bad_request)", body = ErrorBody),
        (status = 401, description = "The admin token is missing or wrong (unauthorized)", body = ErrorBody),
        (status = 409, description = "Another backup is running (backup_running)", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (payload_too_large)", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON (unsupported_media_type)", body = ErrorBody),
        (status = 500, description = "Reading the data or writing the copy failed (backup_failed)", body = ErrorBody),
        (status = 501, description = "The event log is in PostgreSQL: back it up with pg_dump (backup_unsupported)", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn backup(
    State(state): State<AppState>,
    Json(request): Json<BackupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let _running = RUNNING.try_lock().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            "another backup is running; try again when it has finished",
        )
    })?;
    if state.store.backend() != crate::event_store::Backend::Sqlite {
        return Err(crate::backup::BackupError::LogInPostgres.into());
    }
    let dest = PathBuf::from(request.dest);
    let data_dir = state.data_dir.clone();
    let plugins_dir = state.plugins.dir().to_path_buf();
    tracing::info!(dest = %dest.display(), "backup started");
    let report =
        tokio::task::spawn_blocking(move || crate::backup::run(&data_dir, &plugins_dir, &dest))
            .await
            .map_err(|error| ApiError::internal("backup_failed", &error))??;
    tracing::info!(
        dest = %report.dest.display(),
        position = report.position,
        files = report.files.len(),
        "backup written"
    );
    Ok(axum::Json(report))
}
