//! Tessera: a CQRS host whose business logic runs as sandboxed WebAssembly components.
//!
//! [`serve`] is the entry point: it opens the write store, loads the plugins and serves
//! the HTTP API on a listener until a shutdown future resolves. The binary only parses
//! arguments and calls it; tests call it on `127.0.0.1:0`.
//!
//! Modules, outermost first: [`http`] (the API), [`command_bus`] (commands to events),
//! [`plugin`] (Wasm components), [`event_store`] (the log). See `ARCHITECTURE.md`.

pub mod command_bus;
pub mod event_store;
pub mod http;
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
use crate::plugin::{Limits, Plugins, Runtime};
use crate::projection::Projections;
use crate::query::Queries;

/// Everything a host needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the host keeps its databases.
    pub data_dir: PathBuf,
    /// The folder of `.wasm` plugins to serve.
    pub plugins_dir: PathBuf,
    pub durability: Durability,
    pub limits: Limits,
}

impl Config {
    /// A configuration with default durability and limits.
    pub fn new(data_dir: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            plugins_dir: plugins_dir.into(),
            durability: Durability::default(),
            limits: Limits::default(),
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
    #[error("cannot read the plugins folder {path}: {source}")]
    PluginsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs a host on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish and closes the store.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = Arc::new(SqliteEventStore::open(
        &config.data_dir.join("events.db"),
        config.durability,
    )?);
    let runtime =
        Runtime::new(config.limits.clone()).map_err(|e| ServeError::Runtime(format!("{e:#}")))?;
    let plugins = Arc::new(Plugins::new(runtime));
    plugins
        .load_dir(&config.plugins_dir)
        .await
        .map_err(|source| ServeError::PluginsDir {
            path: config.plugins_dir.clone(),
            source,
        })?;
    let event_store: Arc<dyn EventStore> = store.clone();
    let bus = Arc::new(CommandBus::new(event_store.clone(), plugins.clone()));
    // Workers start from their checkpoints: whatever a crash left unapplied (inline
    // projections included) is caught up before or while the first requests arrive.
    let projections = Arc::new(Projections::new(
        event_store.clone(),
        config.data_dir.join("projections"),
    ));
    projections.sync(&plugins.catalog());
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
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Http)?;
    projections.shutdown().await;
    let closing = store.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    tracing::info!("stopped");
    Ok(())
}
