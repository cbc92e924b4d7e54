//! Tessera: a CQRS host whose business logic runs as sandboxed WebAssembly components.
//!
//! [`serve`] is the entry point: it opens the write store, loads the plugins and serves
//! the HTTP API on a listener until a shutdown future resolves. The binary only parses
//! arguments and calls it; tests call it on `127.0.0.1:0`.
//!
//! Modules, outermost first: [`http`] (the API), [`command_bus`] (commands to events),
//! [`plugin`] (Wasm components), [`event_store`] (the log). See `ARCHITECTURE.md`.

pub mod command_bus;
pub mod dev;
pub mod event_store;
pub mod http;
pub mod json;
pub mod plugin;
pub mod projection;
pub mod query;
pub mod read_store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::command_bus::CommandBus;
use crate::event_store::{Durability, EventStore, SqliteEventStore, StoreError};
use crate::plugin::{Limits, PluginWatcher, Plugins, Runtime};
use crate::projection::Projections;
use crate::query::Queries;
use tokio_util::sync::CancellationToken;

/// Everything a host needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the host keeps its databases.
    pub data_dir: PathBuf,
    /// The folder of `.wasm` plugins to serve.
    pub plugins_dir: PathBuf,
    pub durability: Durability,
    pub limits: Limits,
    /// Reload plugins when files in the plugins folder change.
    pub watch_plugins: bool,
    /// The bearer token of the admin endpoints. Without one, they answer only to
    /// clients on the loopback interface.
    pub admin_token: Option<String>,
    /// How long a shutdown may take, whatever plugins are doing. The first half is
    /// given to calls in flight; then every plugin call is ended, and past the whole
    /// of it the host stops without waiting further (acknowledged commands are
    /// durable and checkpoints transactional, so nothing is lost either way).
    pub shutdown_timeout: std::time::Duration,
}

impl Config {
    /// A configuration with default durability and limits.
    pub fn new(data_dir: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            plugins_dir: plugins_dir.into(),
            durability: Durability::default(),
            limits: Limits::default(),
            watch_plugins: true,
            admin_token: None,
            shutdown_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Why the host could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the write store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(String),
    /// A folder the host needs (plugins, projections) cannot be read or created.
    #[error("cannot use the folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    /// The host did not stop within its shutdown timeout; what was still running was
    /// abandoned (the stores are checked at the next start).
    #[error("the host did not stop within {0:?}")]
    ShutdownTimedOut(std::time::Duration),
}

/// Runs a host on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish and closes the store.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // A marker that exists while the host runs: found at start, it means the last run
    // did not stop cleanly, so the stores are checked before use.
    std::fs::create_dir_all(&config.data_dir).map_err(StoreError::Io)?;
    let running = config.data_dir.join("RUNNING");
    let unclean = running.exists();
    std::fs::write(&running, std::process::id().to_string()).map_err(StoreError::Io)?;
    let store = Arc::new(SqliteEventStore::open(
        &config.data_dir.join("events.db"),
        config.durability,
    )?);
    if unclean {
        tracing::warn!("the last run did not stop cleanly; checking the stores");
        store.quick_check()?;
    }
    read_store::limit_heap(config.limits.sqlite_heap)
        .map_err(|e| ServeError::Runtime(format!("cannot bound SQLite's memory: {e}")))?;
    let runtime =
        Runtime::new(config.limits.clone()).map_err(|e| ServeError::Runtime(format!("{e:#}")))?;
    let calls = runtime.clone();
    let plugins = Arc::new(Plugins::new(
        runtime,
        config.plugins_dir.clone(),
        Some(config.data_dir.join("plugins")),
    ));
    let plugins_dir_error = |source| ServeError::Folder {
        path: config.plugins_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.plugins_dir).map_err(plugins_dir_error)?;
    plugins.reload().await.map_err(plugins_dir_error)?;
    let event_store: Arc<dyn EventStore> = store.clone();
    let bus = Arc::new(CommandBus::new(event_store.clone(), plugins.clone()));
    // Workers start from their checkpoints: whatever a crash left unapplied (inline
    // projections included) is caught up before or while the first requests arrive.
    let projections = Arc::new(
        Projections::new(
            event_store.clone(),
            plugins.clone(),
            config.data_dir.join("projections"),
            unclean,
        )
        .map_err(|source| ServeError::Folder {
            path: config.data_dir.join("projections"),
            source,
        })?,
    );
    projections.sync(&plugins.catalog()).await;
    let background = CancellationToken::new();
    let lifecycle = tokio::spawn(projections.clone().run_lifecycle(background.clone()));
    let follower = tokio::spawn(follow_catalog(
        plugins.clone(),
        projections.clone(),
        background.clone(),
    ));
    let watcher = if config.watch_plugins {
        let watcher = PluginWatcher::start(plugins.clone(), WATCH_DEBOUNCE)
            .map_err(|e| plugins_dir_error(std::io::Error::other(e)))?;
        Some(watcher)
    } else {
        None
    };
    let queries = Arc::new(Queries::new(
        event_store.clone(),
        plugins.clone(),
        projections.clone(),
    ));
    let app = http::router(http::AppState {
        store: event_store,
        bus,
        plugins,
        projections: projections.clone(),
        queries,
        admin_token: config.admin_token.clone().map(Arc::from),
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving");
    }
    let stopping = CancellationToken::new();
    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    let run = async {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stopping.clone().cancelled_owned())
        .await
        .map_err(ServeError::Http)?;
        if let Some(watcher) = watcher {
            watcher.stop().await;
        }
        background.cancel();
        let _ = follower.await;
        let _ = lifecycle.await;
        // Workers stop after their batch; a batch in a plugin call ends at its
        // deadline, or at once when the calls are stopped below.
        projections.shutdown().await;
        let closing = store.clone();
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        Ok::<_, ServeError>(())
    };
    let limit = config.shutdown_timeout;
    let bounded = async {
        stopping.cancelled().await;
        tracing::info!(timeout = ?limit, "stopping");
        // Calls in flight get half the time to finish; then every call is ended.
        tokio::time::sleep(limit / 2).await;
        tracing::warn!("plugin calls still running at shutdown; ending them");
        calls.stop_calls();
        tokio::time::sleep(limit - limit / 2).await;
    };
    tokio::select! {
        result = run => result?,
        () = bounded => {
            tracing::error!(timeout = ?limit, "the host did not stop in time; abandoning what still runs");
            return Err(ServeError::ShutdownTimedOut(limit));
        }
    }
    let _ = std::fs::remove_file(&running);
    tracing::info!("stopped");
    Ok(())
}

/// How long the plugins folder must be quiet before a change is loaded.
const WATCH_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(150);

/// Keeps the projection workers in step with the served plugins.
async fn follow_catalog(
    plugins: Arc<Plugins>,
    projections: Arc<Projections>,
    stop: CancellationToken,
) {
    let mut catalogs = plugins.subscribe();
    loop {
        tokio::select! {
            changed = catalogs.changed() => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
        let catalog = catalogs.borrow_and_update().clone();
        projections.sync(&catalog).await;
    }
}
