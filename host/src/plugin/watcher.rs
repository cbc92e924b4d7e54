//! Watches the plugins folder and reloads when a `.wasm` file is added, replaced or
//! removed.
//!
//! Events are debounced: a reload starts only once the folder has been quiet for the
//! debounce period, so a file written in several steps is read once, whole. A file
//! written under a temporary name and renamed into place is seen at its final name.
//! Unchanged content (same digest) is not reloaded, so the watcher noticing a deploy
//! that already reloaded costs one hash.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Plugins;

/// A running watcher: the debouncer (notify-debouncer-full) and the task that reloads.
#[derive(Debug)]
pub struct PluginWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl PluginWatcher {
    /// Starts watching `plugins`' folder; a change is loaded once its file has been
    /// quiet for `debounce`.
    pub fn start(plugins: Arc<Plugins>, debounce: Duration) -> notify::Result<Self> {
        let (changes, mut changed) = mpsc::unbounded_channel::<()>();
        let mut debouncer =
            new_debouncer(
                debounce,
                None,
                move |result: DebounceEventResult| match result {
                    Ok(events) => {
                        let relevant = events.iter().any(|event| {
                            !matches!(
                                event.kind,
                                EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
                            ) && event.paths.iter().any(|path| is_wasm(path))
                        });
                        if relevant {
                            let _ = changes.send(());
                        }
                    }
                    Err(errors) => {
                        for error in errors {
                            tracing::warn!(%error, "plugin folder watch error");
                        }
                    }
                },
            )?;
        debouncer.watch(plugins.dir(), RecursiveMode::NonRecursive)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = changed.recv() => if got.is_none() { break },
                    () = stop.cancelled() => break,
                }
                // Batches that arrived during the last reload are covered by this one.
                while changed.try_recv().is_ok() {}
                match plugins.reload().await {
                    Ok(0) => {}
                    Ok(files) => tracing::info!(files, "plugins reloaded"),
                    Err(error) => tracing::error!(%error, "cannot rescan the plugins folder"),
                }
            }
        });
        Ok(PluginWatcher {
            _debouncer: debouncer,
            cancel,
            task,
        })
    }

    /// Stops watching; a reload under way finishes first.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
}
