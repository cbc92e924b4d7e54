//! The test kit of the end-to-end tests: everything a test needs to start a host, talk
//! to it and wait for it, written once. Reach for:
//!
//! - [`TestHost`] for a host serving in this process on a fresh folder:
//!   [`TestHost::start`] with plugin files, [`TestHost::start_with`] to change the
//!   configuration too (limits, an admin token, `--auth`), [`TestHost::start_files`]
//!   for plugins under names of the test's choosing, [`TestHost::start_configured`] on
//!   a folder the test prepared first ([`test_dir`]), [`TestHost::start_sharing`] for
//!   a second host on the same store, [`TestHost::restart`]; with
//!   `TESSERA_TEST_STORE=postgres` each new host keeps its log in a fresh PostgreSQL
//!   database instead of SQLite ([`postgres`], `make test-postgres`);
//! - [`binary::Binary`] for the real `tessera` binary as a child process: what needs a
//!   SIGKILL, a SIGTERM, the pid (`/proc`) or the process's log;
//! - [`http::Api`] for the HTTP API: both hosts dereference to one, so `host.head()`,
//!   `host.query(..)`, `host.deploy(..)`, `host.read_log()`, `host.wait_live(..)` work
//!   on either; [`http::Api::of`] gives one for a client of a task's own, and
//!   [`http::Api::with_timeout`] one whose requests give up;
//! - [`http::Reply`], a response to assert on ([`Reply::ok`], [`Reply::assert_error`]),
//!   and [`is_error_body`] for the JSON error contract as a predicate;
//! - [`eventually`] for every bounded wait on an outcome (no assertion is on time);
//! - [`AggregateTest`] for given/when/then on a command handler, with no host;
//! - the modules for what a family of tests shares: [`deploy`] (plugin files and new
//!   versions of their code), [`lifecycle`] (prepared logs, projection versions),
//!   [`read_side`] (the bank's ledger computed from the log), [`bank_script`] (the
//!   differential script run against the bank in each language), [`crash`] (the crash
//!   tests' acknowledgements and checks against a rebuild);
//! - `fastrand::Rng::with_seed` for a seeded random sequence (the seed printed, so a
//!   run can be repeated).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tempfile::TempDir;
use tessera::event_store::{Metadata, RecordedEvent};
use tessera::plugin::{Command, CommandHandler, Limits, PluginCode, Refusal, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use http::{Api, Reply, assert_error, at_least, is_error_body};
pub use tessera_test_support::plugins;

pub mod bank_script;
pub mod binary;
pub mod crash;
pub mod deploy;
pub mod http;
pub mod lifecycle;
pub mod postgres;
pub mod read_compare;
pub mod read_side;

/// The longest a bounded wait waits: generous, for a slow machine under load.
pub const WAIT: Duration = Duration::from_secs(120);
/// The pause between two polls of a bounded wait.
pub const POLL: Duration = Duration::from_millis(25);

/// Polls `probe` until it returns `Ok`, for at most [`WAIT`]; panics with `what` and
/// the last thing seen (the `Err`) otherwise.
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > WAIT => {
                panic!("waited {WAIT:?} for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A fresh id (`<prefix>-<n>`), unique in this test process.
pub fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh folder for a host: `plugins/` holding copies of `plugins`, and an empty
/// `data/` for the caller to prepare (a log copied from another host, or appended
/// straight through the event store) before [`TestHost::start_configured`].
pub fn test_dir(plugins: &[&str]) -> Result<Arc<TempDir>> {
    let files = plugins
        .iter()
        .map(|plugin| {
            Ok((
                Path::new(plugin).file_name().context("plugin file name")?,
                *plugin,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let dir = Arc::new(TempDir::new()?);
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    std::fs::create_dir_all(dir.path().join("data"))?;
    for (name, source) in files {
        std::fs::copy(source, plugins_dir.join(name)).with_context(|| format!("copy {source}"))?;
    }
    Ok(dir)
}

/// The data folder of a folder made by [`test_dir`].
pub fn data_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

/// Limits with the same short deadline for every kind of call, and default memory.
pub fn short_limits(deadline: Duration) -> Limits {
    Limits {
        command_deadline: deadline,
        query_deadline: deadline,
        projection_deadline: deadline,
        ..Limits::default()
    }
}

/// A host serving over HTTP in this process, on a data folder that outlives restarts;
/// its [`Api`] is reached through it (`host.command(..)`).
pub struct TestHost {
    api: Api,
    dir: Arc<TempDir>,
    /// Where its log is: restarts and hosts sharing it use the same.
    store: tessera::StoreChoice,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Deref for TestHost {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Sends the logs of the hosts this test process runs in-process to the test's own
/// output (warnings and errors, or what `RUST_LOG` asks for), so that a failed test
/// shows why the host answered as it did: a 500's cause is logged, not returned.
fn show_host_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init();
    });
}

impl TestHost {
    /// Starts a host serving copies of the given plugin files.
    pub async fn start(plugins: &[&str]) -> Result<TestHost> {
        TestHost::start_with(plugins, |_| {}).await
    }

    /// Starts a host serving copies of `plugins`, with the default configuration
    /// changed by `configure` (limits, an admin token...).
    pub async fn start_with(
        plugins: &[&str],
        configure: impl FnOnce(&mut tessera::Config),
    ) -> Result<TestHost> {
        TestHost::start_configured(test_dir(plugins)?, configure).await
    }

    /// Starts a host whose plugins folder holds `files`, each `(name in the folder, file
    /// to copy)`, with the default configuration changed by `configure`.
    pub async fn start_files(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut tessera::Config),
    ) -> Result<TestHost> {
        let dir = test_dir(&[])?;
        for (name, source) in files {
            std::fs::copy(source, dir.path().join("plugins").join(name))
                .with_context(|| format!("copy {source}"))?;
        }
        TestHost::start_configured(dir, configure).await
    }

    /// Starts a second host on the same data and plugins folders as `other`: two
    /// writers on one SQLite file, as two processes would be. Each host has its own
    /// write connection, stream locks and state cache, so only the store's optimistic
    /// concurrency keeps their appends apart.
    pub async fn start_sharing(other: &TestHost) -> Result<TestHost> {
        TestHost::start_on(other.dir.clone(), Some(other.store.clone()), |_| {}).await
    }

    /// Starts a host on `dir` (its `data` and `plugins` folders, see [`test_dir`]) with
    /// the default configuration changed by `configure` (an admin token, short
    /// deadlines...).
    pub async fn start_configured(
        dir: Arc<TempDir>,
        configure: impl FnOnce(&mut tessera::Config),
    ) -> Result<TestHost> {
        TestHost::start_on(dir, None, configure).await
    }

    /// Starts a host on `dir` with its log in `store`; with none given, in SQLite, or
    /// in a fresh PostgreSQL database when `TESSERA_TEST_STORE=postgres`. `configure`
    /// may still choose the store itself.
    async fn start_on(
        dir: Arc<TempDir>,
        store: Option<tessera::StoreChoice>,
        configure: impl FnOnce(&mut tessera::Config),
    ) -> Result<TestHost> {
        show_host_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut config = tessera::Config::new(dir.path().join("data"), dir.path().join("plugins"));
        config.store = match store {
            Some(store) => store,
            None if postgres::hosts_on_postgres() => {
                tessera::StoreChoice::Postgres(postgres::fresh_database().await)
            }
            None => tessera::StoreChoice::Sqlite,
        };
        configure(&mut config);
        let store = config.store.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            tessera::serve(listener, config, shutdown)
                .await
                .expect("host failed");
        });
        let host = TestHost {
            api: Api::of(&reqwest::Client::new(), &url),
            dir,
            store,
            stop: Some(stop),
            task: Some(task),
        };
        host.wait_ready().await?;
        Ok(host)
    }

    async fn wait_ready(&self) -> Result<()> {
        for _ in 0..600 {
            if let Ok(response) = self.client.get(format!("{}/health", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("host at {} never became ready", self.url)
    }

    /// Stops the host gracefully and starts a new one on the same folders.
    pub async fn restart(mut self) -> Result<TestHost> {
        self.shutdown().await;
        TestHost::start_on(self.dir.clone(), Some(self.store.clone()), |_| {}).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("host task panicked");
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// The host's [`Api`], to clone into a task.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The host, its requests giving up after `timeout` (see [`Api::with_timeout`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> TestHost {
        self.api = self.api.with_timeout(timeout);
        self
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Given/when/then for a command handler plugin, straight through the plugin runtime.
///
/// ```ignore
/// AggregateTest::new(plugins::BANK_ACCOUNT)
///     .given(&[("AccountOpened", json!({"owner": "ada"}))])
///     .when("deposit", json!({"amount": 5}))
///     .then_events(&[("Deposited", json!({"amount": 5}))]);
/// ```
pub struct AggregateTest {
    handler: Arc<CommandHandler>,
    given: Vec<RecordedEvent>,
}

/// What a handler decided, to assert on.
pub struct Then {
    decision: std::result::Result<Vec<(String, Value)>, Refusal>,
}

impl AggregateTest {
    pub fn new(plugin: &str) -> Self {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        let bytes = std::fs::read(plugin).expect("plugin file");
        let plugin = runtime.load(&bytes).expect("plugin loads");
        // Irrefutable while command handlers are the only kind of plugin code.
        #[allow(irrefutable_let_patterns)]
        let PluginCode::CommandHandler(handler) = plugin.code else {
            panic!("not a command handler");
        };
        AggregateTest {
            handler,
            given: Vec::new(),
        }
    }

    /// The events already in the stream, oldest first.
    pub fn given(mut self, events: &[(&str, Value)]) -> Self {
        for (event_type, data) in events {
            let version = self.given.len() as u64 + 1;
            self.given.push(RecordedEvent {
                position: version,
                stream: "test-1".into(),
                version,
                event_type: event_type.to_string(),
                data: serde_json::value::to_raw_value(data).expect("JSON"),
                metadata: metadata(),
                timestamp: "2026-01-01T00:00:00Z".into(),
            });
        }
        self
    }

    /// Folds the given events and decides on the command.
    pub fn when(self, command: &str, payload: Value) -> Then {
        let mut session = self.handler.session().expect("instance");
        // As the command bus does: one fold of the whole stream.
        let state = session.fold(None, &self.given).expect("fold");
        let decision = session
            .handle(
                state.as_deref(),
                &Command {
                    name: command.into(),
                    aggregate_id: "1".into(),
                    payload: payload.to_string(),
                    metadata: metadata(),
                },
            )
            .expect("handle");
        Then {
            decision: decision.map(|events| {
                events
                    .into_iter()
                    .map(|(t, d)| (t, serde_json::from_str(d.get()).expect("JSON")))
                    .collect()
            }),
        }
    }
}

impl Then {
    pub fn then_events(self, expected: &[(&str, Value)]) {
        let expected: Vec<(String, Value)> = expected
            .iter()
            .map(|(t, d)| (t.to_string(), d.clone()))
            .collect();
        assert_eq!(self.decision, Ok(expected));
    }

    /// Expects a business rejection with this code.
    pub fn then_rejected(self, code: &str) {
        match self.decision {
            Err(Refusal::Rejected { code: actual, .. }) => assert_eq!(actual, code),
            other => panic!("expected rejection {code}, got {other:?}"),
        }
    }

    /// Expects a validation failure naming this field.
    pub fn then_invalid(self, field: &str) {
        match self.decision {
            Err(Refusal::Invalid(fields)) => assert!(
                fields.iter().any(|(f, _)| f == field),
                "expected {field} among {fields:?}"
            ),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

fn metadata() -> Metadata {
    Metadata {
        command_id: "c1".into(),
        correlation_id: "c1".into(),
        causation_id: "c1".into(),
        principal: None,
        timestamp: "2026-01-01T00:00:00Z".into(),
        request_id: None,
        claims: None,
    }
}
