//! Helpers shared by the end-to-end tests: a real host on `127.0.0.1:0` over a real
//! SQLite file, an HTTP client for it, and given/when/then fixtures for handlers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::event_store::{Metadata, RecordedEvent};
use tessera::plugin::{Command, CommandHandler, Limits, PluginCode, Refusal, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use tessera_test_support::plugins;
pub mod crash;
pub mod deploy;
pub mod hardening;
pub mod lifecycle;
pub mod read_side;

/// A host serving over HTTP in this process, on a data folder that outlives restarts.
pub struct TestHost {
    pub url: String,
    pub client: reqwest::Client,
    dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
    /// Starts a host serving the given plugin files.
    pub async fn start(plugins: &[&str]) -> Result<TestHost> {
        let dir = Arc::new(TempDir::new()?);
        std::fs::create_dir_all(dir.path().join("plugins"))?;
        for plugin in plugins {
            let name = Path::new(plugin).file_name().context("plugin file name")?;
            std::fs::copy(plugin, dir.path().join("plugins").join(name))?;
        }
        TestHost::start_in(dir).await
    }

    /// Starts a second host on the same data and plugins folders as `other`: two
    /// writers on one SQLite file, as two processes would be. Each host has its own
    /// write connection, stream locks and state cache, so only the store's optimistic
    /// concurrency keeps their appends apart.
    pub async fn start_sharing(other: &TestHost) -> Result<TestHost> {
        TestHost::start_in(other.dir.clone()).await
    }

    async fn start_in(dir: Arc<TempDir>) -> Result<TestHost> {
        TestHost::start_configured(dir, |_| {}).await
    }

    /// Starts a host on `dir` (its `data` and `plugins` folders) with the default
    /// configuration changed by `configure` (an admin token, short deadlines...).
    pub async fn start_configured(
        dir: Arc<TempDir>,
        configure: impl FnOnce(&mut tessera::Config),
    ) -> Result<TestHost> {
        show_host_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut config = tessera::Config::new(dir.path().join("data"), dir.path().join("plugins"));
        configure(&mut config);
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
            url,
            client: reqwest::Client::new(),
            dir,
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
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("host at {} never became ready", self.url)
    }

    /// Stops the host gracefully and starts a new one on the same folders.
    pub async fn restart(mut self) -> Result<TestHost> {
        self.shutdown().await;
        TestHost::start_in(self.dir.clone()).await
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

    /// Sends a command; returns the status and the JSON body.
    pub async fn command(
        &self,
        name: &str,
        aggregate_id: &str,
        payload: Value,
    ) -> Result<(u16, Value)> {
        self.command_with(
            name,
            json!({ "aggregate_id": aggregate_id, "payload": payload }),
            &[],
        )
        .await
    }

    /// Sends a command body with extra headers; returns the status and the JSON body.
    pub async fn command_with(
        &self,
        name: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let mut request = self
            .client
            .post(format!("{}/commands/{name}", self.url))
            .json(&body);
        for (header, value) in headers {
            request = request.header(*header, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// Sends raw bytes as a command body with the given content type.
    pub async fn raw_command(
        &self,
        name: &str,
        content_type: &str,
        body: &'static str,
    ) -> Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}/commands/{name}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    /// Sends a command body with extra headers; returns the whole reply, headers included.
    pub async fn send(&self, name: &str, body: &Value, headers: &[(&str, &str)]) -> Result<Reply> {
        send_command(&self.client, &self.url, name, body, headers).await
    }

    /// Sends any bytes to `path` with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<Reply> {
        let mut request = self.client.post(format!("{}{path}", self.url)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Reply::read(request.send().await?).await
    }

    /// Sends a request with any method and no body.
    pub async fn request(&self, method: reqwest::Method, path: &str) -> Result<Reply> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .send()
            .await?;
        Reply::read(response).await
    }

    /// Every event of a stream, read page by page through `GET /streams/{stream}`.
    pub async fn read_stream(&self, stream: &str) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .get(&format!(
                    "/streams/{stream}?after_version={after}&limit=1000"
                ))
                .await?;
            anyhow::ensure!(status == 200, "reading {stream} failed: {status} {page}");
            events.extend(page["events"].as_array().context("events")?.iter().cloned());
            match page["next_after_version"].as_u64() {
                Some(next) => after = next,
                None => return Ok(events),
            }
        }
    }

    /// The whole global log, read page by page through `GET /events`.
    pub async fn read_log(&self) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .get(&format!("/events?after={after}&limit=1000"))
                .await?;
            anyhow::ensure!(status == 200, "reading the log failed: {status} {page}");
            let batch = page["events"].as_array().context("events")?;
            if batch.is_empty() {
                return Ok(events);
            }
            events.extend(batch.iter().cloned());
            after = page["next_after"].as_u64().context("next_after")?;
        }
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }
}

/// A response as the tests look at it: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The JSON body; a body that is not JSON is kept as a JSON string, so that an
    /// assertion on it fails with the text in the message.
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Result<Reply> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A stream of server-sent events (`GET /events/stream`) does not end: its body
        // is left unread, as null.
        let streaming = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if streaming {
            return Ok(Reply {
                status,
                headers,
                body: Value::Null,
            });
        }
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the JSON error contract (see [`assert_error`]).
    #[track_caller]
    pub fn assert_error(&self, expected_status: u16, expected_code: &str) {
        assert_error(self.status, &self.body, expected_status, expected_code);
    }

    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected success, body: {}", self.body);
        &self.body
    }
}

/// Sends a command through any client, so that tests can use one client per task.
pub async fn send_command(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let mut request = client.post(format!("{url}/commands/{name}")).json(body);
    for (header, value) in headers {
        request = request.header(*header, *value);
    }
    Reply::read(request.send().await?).await
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts the JSON error contract: status, code, and a request id in the body.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "unexpected status, body: {body}");
    assert_eq!(body["error"]["code"], expected_code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
    assert!(
        body["request_id"].as_str().is_some(),
        "error without a request id: {body}"
    );
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
