//! What a projection worker reports about itself.

use std::time::Instant;

use serde::Serialize;

/// Where a projection version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Opening its database or running setup.
    Starting,
    /// Behind the write head and applying.
    CatchingUp,
    /// At the write head, waiting for new events.
    Live,
    /// The last batch failed; the worker retries after a pause.
    Failed,
    /// Stopped by the host (shutdown or replaced).
    Stopped,
}

/// Shared between a worker and whoever asks about it.
#[derive(Debug)]
pub(super) struct Status {
    pub state: State,
    pub error: Option<String>,
    /// The position of the event whose apply failed, if one did.
    pub failed_at: Option<u64>,
    /// Since when the projection has been behind the head; none when live.
    pub behind_since: Option<Instant>,
    pub events_applied: u64,
    /// True once setup has committed: the database exists and can be read.
    pub ready: bool,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: State::Starting,
            error: None,
            failed_at: None,
            behind_since: None,
            events_applied: 0,
            ready: false,
        }
    }
}

/// A projection version as `GET /projections` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    pub mode: crate::plugin::ProjectionMode,
    pub status: State,
    /// The position of the last event whose effects are committed.
    pub checkpoint: u64,
    /// The write store's head.
    pub head: u64,
    /// Events between the checkpoint and the head.
    pub lag_events: u64,
    /// How long the projection has been behind the head, in milliseconds.
    pub lag_ms: u64,
    /// Events this worker applied since it started.
    pub events_applied: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<u64>,
    /// The plugin code's digest.
    pub digest: String,
}
