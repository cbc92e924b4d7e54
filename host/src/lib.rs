//! Tessera: a CQRS host whose business logic runs as sandboxed WebAssembly components.
//!
//! [`serve`] is the entry point: it opens the write store, loads the plugins and serves
//! the HTTP API on a listener until a shutdown future resolves. The binary only parses
//! arguments and calls it; tests call it on `127.0.0.1:0`.
//!
//! Modules, outermost first (see `ARCHITECTURE.md`):
//! - [`http`]: the API, the dashboard and the error contract (`http/error.rs` maps every
//!   domain error to a status); [`request_id`]: the id each request's work carries;
//! - [`auth`]: callers' identities (JWT and API keys), verified before the HTTP layer
//!   lets a request through;
//! - [`command_bus`]: commands to events; [`query`]: questions to answers;
//!   [`projection`]: the scheduler and lifecycle of read-model versions;
//! - [`plugin`]: everything Wasm; [`json`]: the JSON rules for input and guest output;
//! - [`event_store`]: the log; [`read_store`]: the projections' databases;
//! - operations: [`backup`] (online copies), [`retention`] (idempotency keys),
//!   [`metrics`] (Prometheus);
//! - tooling: [`dev`] (`tessera dev`), [`scaffold`] (`tessera new`), [`remote`] (the
//!   command line's client of a running host).

pub mod auth;
pub mod backup;
pub mod command_bus;
pub mod dev;
pub mod event_store;
pub mod http;
pub mod json;
pub mod metrics;
pub mod plugin;
pub mod projection;
pub mod query;
pub mod read_store;
pub mod remote;
pub mod request_id;
pub mod retention;
pub mod scaffold;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::command_bus::CommandBus;
use crate::event_store::{
    Durability, EventStore, PostgresEventStore, SqliteEventStore, StoreError,
};
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
    /// Where the event log is: SQLite in the data folder (the default), or a
    /// PostgreSQL database that several hosts may share.
    pub store: StoreChoice,
    pub durability: Durability,
    pub limits: Limits,
    /// Reload plugins when files in the plugins folder change.
    pub watch_plugins: bool,
    /// The bearer token of the admin endpoints. Without one, they answer only to
    /// clients on the loopback interface.
    pub admin_token: Option<String>,
    /// How callers of commands, queries and the log are authenticated (`--auth`);
    /// off by default. The admin endpoints keep `admin_token` either way.
    pub auth: auth::AuthConfig,
    /// How long a shutdown may take, whatever plugins are doing. The first half is
    /// given to calls in flight; then every plugin call is ended, and past the whole
    /// of it the host stops without waiting further (acknowledged commands are
    /// durable and checkpoints transactional, so nothing is lost either way).
    pub shutdown_timeout: std::time::Duration,
    /// How long an idempotency key is kept after its command: a command sent again
    /// with the key within it is answered from the first one; after it (give or take
    /// one sweep), the key is free again. Zero keeps keys forever.
    pub idempotency_retention: std::time::Duration,
    /// Record metrics and serve them at `GET /metrics` (on by default). Off
    /// (`--no-metrics`), nothing is recorded and the route answers 404; the recorder is
    /// process-wide, so another host in the same process that has them on records for
    /// both.
    pub metrics: bool,
}

impl Config {
    /// A configuration with default durability and limits.
    pub fn new(data_dir: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            plugins_dir: plugins_dir.into(),
            store: StoreChoice::Sqlite,
            durability: Durability::default(),
            limits: Limits::default(),
            watch_plugins: true,
            admin_token: None,
            auth: auth::AuthConfig::default(),
            shutdown_timeout: std::time::Duration::from_secs(10),
            idempotency_retention: std::time::Duration::from_secs(24 * 60 * 60),
            metrics: true,
        }
    }
}

/// Where a host keeps its event log (`--store`, `TESSERA_STORE`).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// `events.db` in the data folder: one host (or processes on one machine).
    #[default]
    Sqlite,
    /// A PostgreSQL database, by its URL (`postgres://user@host:port/db`): any number
    /// of hosts, each with its own data folder for its read models (`docs/postgres.md`).
    Postgres(String),
}

/// A `--store` value that names no store this host knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown store {0:?}: expected `sqlite` or a `postgres://` (or `postgresql://`) URL")]
pub struct UnknownStore(String);

impl std::str::FromStr for StoreChoice {
    type Err = UnknownStore;

    /// `sqlite`, or a PostgreSQL URL.
    fn from_str(value: &str) -> Result<Self, UnknownStore> {
        if value == "sqlite" {
            Ok(StoreChoice::Sqlite)
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(StoreChoice::Postgres(value.to_string()))
        } else {
            Err(UnknownStore(redact(value)))
        }
    }
}

/// The URL without its password, for logs and messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // A password may also be a parameter (`?password=...`).
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => path.to_string(),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{credentials}@{host}{path}"),
        },
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// Shows a PostgreSQL URL without its password: the configuration is logged.
impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite => f.write_str("Sqlite"),
            StoreChoice::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

/// The store a host opened, for what only one kind of store has (a file check at
/// start, its way of closing).
enum OpenStore {
    Sqlite(Arc<SqliteEventStore>),
    Postgres(Arc<PostgresEventStore>),
}

impl OpenStore {
    async fn open(config: &Config) -> Result<OpenStore, StoreError> {
        Ok(match &config.store {
            StoreChoice::Sqlite => OpenStore::Sqlite(Arc::new(SqliteEventStore::open(
                &config.data_dir.join("events.db"),
                config.durability,
            )?)),
            StoreChoice::Postgres(url) => {
                tracing::info!(store = %redact(url), "event log in PostgreSQL");
                OpenStore::Postgres(Arc::new(
                    PostgresEventStore::open(url, config.durability).await?,
                ))
            }
        })
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        match self {
            OpenStore::Sqlite(store) => store.clone(),
            OpenStore::Postgres(store) => store.clone(),
        }
    }

    /// Checks the store's files after a run that did not stop cleanly. A PostgreSQL
    /// database recovers by itself: nothing to check here.
    fn check(&self) -> Result<(), StoreError> {
        match self {
            OpenStore::Sqlite(store) => store.quick_check(),
            OpenStore::Postgres(_) => Ok(()),
        }
    }

    /// Stops the writer after what is queued.
    async fn close(&self) {
        match self {
            OpenStore::Sqlite(store) => {
                let closing = store.clone();
                let _ = tokio::task::spawn_blocking(move || closing.close()).await;
            }
            OpenStore::Postgres(store) => store.close().await,
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
    /// The authentication keys or settings are unusable; fix the file or flag named.
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] auth::SetupError),
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
    // Keys first: a host that cannot authenticate as configured must not serve.
    let authenticator = auth::Authenticator::load(&config.auth)?.map(Arc::new);
    // A marker that exists while the host runs: found at start, it means the last run
    // did not stop cleanly, so the stores are checked before use.
    std::fs::create_dir_all(&config.data_dir).map_err(StoreError::Io)?;
    let mut marker = RunMarker::place(&config.data_dir).map_err(StoreError::Io)?;
    let unclean = marker.found;
    // Before the store opens and the plugins load, so that their first records count.
    let metrics = config.metrics.then(metrics::install);
    let store = OpenStore::open(&config).await?;
    if unclean {
        tracing::warn!("the last run did not stop cleanly; checking the stores");
        store.check()?;
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
    let event_store: Arc<dyn EventStore> = store.shared();
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
    let retention = retention::spawn(
        event_store.clone(),
        config.idempotency_retention,
        background.clone(),
    );
    // Cancelled when shutdown starts: long-lived responses (event streams) end on it,
    // so that the graceful shutdown does not wait for them.
    let stopping = CancellationToken::new();
    let app = http::router(http::AppState::new(http::Shared {
        store: event_store,
        bus,
        plugins,
        projections: projections.clone(),
        queries,
        admin_token: config.admin_token.clone().map(Arc::from),
        auth: authenticator,
        data_dir: config.data_dir.clone(),
        shutdown: stopping.clone(),
        metrics,
    }));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving");
    }
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
        let _ = retention.await;
        let _ = follower.await;
        let _ = lifecycle.await;
        // Workers stop after their batch; a batch in a plugin call ends at its
        // deadline, or at once when the calls are stopped below.
        projections.shutdown().await;
        store.close().await;
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
    // From here on, a failure is not a failed start: the marker stays unless the stop
    // is clean.
    marker.serving = true;
    tokio::select! {
        result = run => result?,
        () = bounded => {
            tracing::error!(timeout = ?limit, "the host did not stop in time; abandoning what still runs");
            return Err(ServeError::ShutdownTimedOut(limit));
        }
    }
    marker.remove();
    tracing::info!("stopped");
    Ok(())
}

/// The `RUNNING` marker in the data folder: written at start, removed at a clean stop,
/// so that a start which finds it knows the last run did not stop cleanly. A start
/// that fails leaves the marker as it found it: a failed start is not taken for a
/// crash, nor does it hide one.
struct RunMarker {
    path: PathBuf,
    /// The marker was there before this run wrote it.
    found: bool,
    /// The host got as far as serving.
    serving: bool,
}

impl RunMarker {
    fn place(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let path = data_dir.join("RUNNING");
        let found = path.exists();
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(RunMarker {
            path,
            found,
            serving: false,
        })
    }

    fn remove(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for RunMarker {
    fn drop(&mut self) {
        if !self.serving && !self.found {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::{StoreChoice, redact};

    #[test]
    fn a_store_is_sqlite_or_a_postgres_url() {
        assert_eq!(
            "sqlite".parse::<StoreChoice>().unwrap(),
            StoreChoice::Sqlite
        );
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=disable",
        ] {
            assert_eq!(
                url.parse::<StoreChoice>().unwrap(),
                StoreChoice::Postgres(url.to_string())
            );
        }
        let error = "mysql://root:hunter2@h/db"
            .parse::<StoreChoice>()
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://tessera:s3cret@db:5432/log"),
            "postgres://tessera:***@db:5432/log"
        );
        assert_eq!(
            redact("postgres://tessera@db/log"),
            "postgres://tessera@db/log"
        );
        assert_eq!(
            redact("postgres://db/log?user=t&password=s3cret&connect_timeout=2"),
            "postgres://db/log?user=t&password=***&connect_timeout=2"
        );
        assert_eq!(redact("postgres://db/log"), "postgres://db/log");
        let shown = format!(
            "{:?}",
            StoreChoice::Postgres("postgres://u:pw@h/d".to_string())
        );
        assert!(!shown.contains("pw"), "{shown}");
    }
}
