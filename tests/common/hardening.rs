//! Helpers for the hardening tests (hostile plugins, bad input, the OpenAPI
//! description, crashes): an in-process host with custom limits, the JSON error
//! contract as a predicate, and the real `tessera` binary as a child process that a
//! test can SIGKILL or SIGTERM and restart.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tempfile::TempDir;
use tessera::plugin::Limits;

use super::TestHost;

/// The pause between two polls of a bounded wait.
pub const POLL: Duration = Duration::from_millis(25);

/// Starts an in-process host serving copies of `plugins` (paths of `.wasm` files),
/// with the default configuration changed by `configure` (limits, admin token...).
pub async fn start_host(
    plugins: &[&str],
    configure: impl FnOnce(&mut tessera::Config),
) -> Result<TestHost> {
    let dir = Arc::new(TempDir::new()?);
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    for plugin in plugins {
        let name = Path::new(plugin).file_name().context("plugin file name")?;
        std::fs::copy(plugin, plugins_dir.join(name)).with_context(|| format!("copy {plugin}"))?;
    }
    TestHost::start_configured(dir, configure).await
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

/// `GET /plugins`: every plugin file with its status and last error.
pub async fn plugin_listing(host: &TestHost) -> Result<Vec<Value>> {
    let (status, body) = host.get("/plugins").await?;
    anyhow::ensure!(status == 200, "GET /plugins: {status} {body}");
    body["plugins"].as_array().cloned().context("plugins list")
}

/// The listing entry of the plugin file named `file`.
pub fn listing_entry<'a>(listing: &'a [Value], file: &str) -> Option<&'a Value> {
    listing.iter().find(|entry| entry["file"] == file)
}

/// The file name a plugin path is copied under.
pub fn file_name(plugin: &str) -> String {
    Path::new(plugin)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a body is the JSON error contract: `{"error": {"code", "message",
/// "details"?}, "request_id"}` with a non-empty code and message.
pub fn is_error_body(body: &Value) -> bool {
    body["error"]["code"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
        && body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
        && body["request_id"].as_str().is_some_and(|r| !r.is_empty())
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            bail!("gave up waiting after {timeout:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The resident set size of process `pid` (`VmRSS` in `/proc/<pid>/status`), in KiB;
/// `None` once the process is gone, or where `/proc` does not say.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The program [`Binary::start`] runs, once [`pin_binary`] has set it.
static PINNED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Copies the built `tessera` binary into `dir` and makes every later
/// [`Binary::start`] of this test process run the copy. A test that restarts the
/// binary for minutes (the soak) pins it, so that a rebuild of the shared `target/`
/// meanwhile cannot change the code under test halfway. Returns the copy's path.
pub fn pin_binary(dir: &Path) -> Result<PathBuf> {
    let copy = dir.join("tessera");
    std::fs::copy(env!("CARGO_BIN_EXE_tessera"), &copy).context("cannot copy the binary")?;
    let pinned = PINNED.get_or_init(|| copy.clone());
    anyhow::ensure!(
        *pinned == copy,
        "the binary was already pinned to {pinned:?}"
    );
    Ok(copy)
}

/// The real `tessera` binary (`tessera serve`) as a child process. Dropping it kills
/// the process, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Binary {
    child: Option<Child>,
    pub pid: u32,
    pub url: String,
    pub client: reqwest::Client,
    pub data: PathBuf,
    pub plugins: PathBuf,
    /// Where the process's stdout and stderr go, appended across restarts.
    pub log: PathBuf,
}

impl Binary {
    /// Starts `tessera serve --data D --plugins P --listen 127.0.0.1:<free port>` with
    /// `extra` arguments, and waits until it answers `GET /health`.
    pub async fn start(data: &Path, plugins: &Path, log: &Path, extra: &[&str]) -> Result<Self> {
        let mut last_error = None;
        // The port was free when we looked; something may take it before the child
        // binds it, so a few tries.
        for _ in 0..5 {
            let port = free_port()?;
            let output = File::options().create(true).append(true).open(log)?;
            let program = PINNED
                .get()
                .map_or(Path::new(env!("CARGO_BIN_EXE_tessera")), PathBuf::as_path);
            let child = Command::new(program)
                .arg("serve")
                .arg("--data")
                .arg(data)
                .arg("--plugins")
                .arg(plugins)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(extra)
                .env("RUST_LOG", "warn,tessera=info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(output.try_clone()?)
                .stderr(output)
                .spawn()
                .context("cannot start the tessera binary")?;
            let mut binary = Binary {
                pid: child.id(),
                child: Some(child),
                url: format!("http://127.0.0.1:{port}"),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()?,
                data: data.to_path_buf(),
                plugins: plugins.to_path_buf(),
                log: log.to_path_buf(),
            };
            match binary.wait_ready().await {
                Ok(()) => return Ok(binary),
                Err(error) => {
                    binary.sigkill();
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one try"))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("tessera exited with {status}; log:\n{}", self.log_tail());
            }
            if let Ok(response) = self.client.get(format!("{}/health", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "tessera at {} never became ready; log:\n{}",
            self.url,
            self.log_tail()
        )
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop gracefully (SIGTERM, through the `kill` command).
    pub fn sigterm(&self) -> Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed: {status}", self.pid);
        Ok(())
    }

    /// Waits, at most `timeout`, for the process to exit, and reaps it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            let child = self
                .child
                .as_mut()
                .context("the process was already reaped")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                bail!(
                    "tessera did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the process's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.sigkill();
    }
}
