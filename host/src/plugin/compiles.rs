//! The compiles in progress: what `GET /plugins` shows while a plugin file compiles
//! (a component from componentize-js or -py takes tens of seconds), and the log lines
//! that say when a compile starts and ends.
//!
//! What it guarantees: a compile is listed from the moment it starts until it ends,
//! whether it succeeded, failed or panicked ([`Compiling`] unlists itself when
//! dropped), and every compile that starts logs its end with its duration. Reading the
//! list never waits for a compile or a reload.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The compiles running now, shared by the loader threads and the listing.
#[derive(Debug, Clone, Default)]
pub(super) struct Compiles {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Running>>,
}

/// One compile in progress.
#[derive(Debug, Clone)]
pub(super) struct Running {
    /// The plugin file it is for (`bank-account.wasm`), or `None` for a version loaded
    /// from the archive, which is no file of the plugins folder.
    pub file: Option<String>,
    /// When it started, RFC 3339.
    pub since: String,
}

impl Compiles {
    /// Notes that a compile of `bytes` (digest `digest`) for `file` starts, and logs it.
    /// The compile is listed until the returned guard is dropped.
    pub fn start(&self, file: Option<&str>, digest: &str, bytes: usize) -> Compiling {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let running = Running {
            file: file.map(str::to_string),
            since: jiff::Timestamp::now().to_string(),
        };
        tracing::info!(
            file = file.unwrap_or("(archived version)"),
            digest = &digest[..digest.len().min(12)],
            megabytes = format!("{:.1}", bytes as f64 / 1e6),
            "plugin compile started"
        );
        self.lock().insert(id, running);
        Compiling {
            compiles: self.clone(),
            id,
            file: file.unwrap_or("(archived version)").to_string(),
            started: Instant::now(),
            outcome: None,
        }
    }

    /// The compiles running now, oldest first.
    pub fn running(&self) -> Vec<Running> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
        // The map is only ever inserted into or removed from, so a panic elsewhere
        // while it was held cannot have left it half changed.
        self.inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A compile in progress: listed until dropped, and its end logged then.
#[derive(Debug)]
pub(super) struct Compiling {
    compiles: Compiles,
    id: u64,
    file: String,
    started: Instant,
    outcome: Option<Result<(), String>>,
}

impl Compiling {
    /// Records how the compile ended, for the log line written when this is dropped.
    pub fn finished(&mut self, outcome: Result<(), String>) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        self.compiles.lock().remove(&self.id);
        let seconds = format!("{:.1}", self.started.elapsed().as_secs_f64());
        match &self.outcome {
            Some(Ok(())) => tracing::info!(file = %self.file, seconds, "plugin compile finished"),
            Some(Err(error)) => {
                tracing::warn!(file = %self.file, seconds, %error, "plugin compile failed")
            }
            None => tracing::warn!(file = %self.file, seconds, "plugin compile abandoned"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compile_is_listed_until_its_guard_drops() {
        let compiles = Compiles::default();
        let mut first = compiles.start(Some("a.wasm"), "00112233445566778899", 10);
        let second = compiles.start(None, "ff", 10);
        let files: Vec<_> = compiles.running().into_iter().map(|r| r.file).collect();
        assert_eq!(files, [Some("a.wasm".to_string()), None]);
        first.finished(Ok(()));
        drop(first);
        assert_eq!(compiles.running().len(), 1);
        drop(second);
        assert!(compiles.running().is_empty());
    }
}
