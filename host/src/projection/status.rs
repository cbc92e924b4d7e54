//! What a projection worker reports about itself, and every version's status as
//! `GET /projections` lists it.

use std::time::Instant;

use serde::Serialize;

use super::Projections;
use super::lifecycle::VersionKey;
use crate::plugin::ProjectionMode;

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
    /// The last batch failed: the worker retries after a pause, or has halted at the
    /// failing event (policy `stop`).
    Failed,
    /// Not running (stopped by the host, or its code is unavailable).
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
    /// Events parked and not yet retried or dropped (counted from the database when
    /// the worker opens it).
    pub parked: u64,
    /// Halted at a failed event (policy `stop`) until a fix or a resume.
    pub halted: bool,
    /// Log positions covered per second, measured over the last second or more.
    pub rate: f64,
    rate_sample: Option<(Instant, u64)>,
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
            parked: 0,
            halted: false,
            rate: 0.0,
            rate_sample: None,
        }
    }
}

impl Status {
    /// Notes that the checkpoint reached `at`, to measure the rate.
    pub fn progress(&mut self, at: u64, head: u64) {
        let now = Instant::now();
        match self.rate_sample {
            None => self.rate_sample = Some((now, at)),
            Some((since, from)) => {
                let elapsed = now.duration_since(since).as_secs_f64();
                if elapsed >= 1.0 {
                    self.rate = at.saturating_sub(from) as f64 / elapsed;
                    self.rate_sample = Some((now, at));
                }
            }
        }
        if at >= head {
            self.rate_sample = Some((now, at));
        }
    }
}

/// A projection version as `GET /projections` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    pub generation: u32,
    /// `active` (queries read it), `building` (catching up to take over),
    /// `standby` (kept up to date for rollback), or `stopped`.
    pub role: &'static str,
    pub mode: ProjectionMode,
    pub status: State,
    /// The position of the last event whose effects are committed.
    pub checkpoint: u64,
    /// The write store's head.
    pub head: u64,
    /// Events between the checkpoint and the head.
    pub lag_events: u64,
    /// How long the projection has been behind the head, in milliseconds.
    pub lag_ms: u64,
    pub progress: Progress,
    /// Events this worker applied since it started.
    pub events_applied: u64,
    /// Events parked (policy `skip`) and not yet retried or dropped.
    pub parked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<u64>,
    /// True when halted at a failed event until a fix or a resume.
    pub halted: bool,
    /// The plugin code's digest.
    pub digest: String,
}

/// How far a catch-up has come.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Log positions done (the checkpoint).
    pub events_done: u64,
    /// Log positions to go (to the head).
    pub events_to_go: u64,
    /// Positions per second, over the last second or more.
    pub events_per_second: f64,
    /// Seconds left at that rate; none when live or when no rate is known yet.
    pub eta_seconds: Option<f64>,
}

/// Which version a status is about.
pub(super) struct Identity<'a> {
    pub name: &'a str,
    pub key: VersionKey,
    pub role: &'static str,
    pub mode: ProjectionMode,
    pub digest: &'a str,
}

impl ProjectionStatus {
    pub(super) fn new(id: Identity<'_>, checkpoint: u64, head: u64, status: &Status) -> Self {
        let Identity {
            name,
            key,
            role,
            mode,
            digest,
        } = id;
        let head = head.max(checkpoint);
        let to_go = head - checkpoint;
        ProjectionStatus {
            name: name.to_string(),
            version: key.version,
            generation: key.generation,
            role,
            mode,
            status: status.state,
            checkpoint,
            head,
            lag_events: to_go,
            lag_ms: status
                .behind_since
                .map_or(0, |since| since.elapsed().as_millis() as u64),
            progress: Progress {
                events_done: checkpoint,
                events_to_go: to_go,
                events_per_second: (status.rate * 10.0).round() / 10.0,
                eta_seconds: (to_go > 0 && status.rate > 0.0)
                    .then(|| (to_go as f64 / status.rate * 10.0).round() / 10.0),
            },
            events_applied: status.events_applied,
            parked: status.parked,
            error: status.error.clone(),
            failed_at: status.failed_at,
            halted: status.halted,
            digest: digest.to_string(),
        }
    }
}

impl Projections {
    /// Every projection version's status.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let head = *self.store.head().borrow();
        let inner = self.lock();
        let mut all = Vec::new();
        for (name, state) in &inner.lifecycle.projections {
            for record in &state.versions {
                let role = if state.active == Some(record.key) {
                    "active"
                } else if record.pending {
                    "building"
                } else {
                    "standby"
                };
                let id = |digest| Identity {
                    name,
                    key: record.key,
                    role,
                    mode: record.mode,
                    digest,
                };
                match inner.workers.get(&(name.clone(), record.key)) {
                    Some(worker) => {
                        let status = worker.status.lock().expect("status lock");
                        all.push(ProjectionStatus::new(
                            id(&worker.digest),
                            *worker.checkpoint().borrow(),
                            head,
                            &status,
                        ));
                    }
                    None => {
                        let status = Status {
                            state: State::Stopped,
                            ..Status::default()
                        };
                        all.push(ProjectionStatus::new(id(&record.digest), 0, head, &status));
                    }
                }
            }
        }
        all
    }
}
