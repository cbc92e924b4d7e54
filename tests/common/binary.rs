//! The real `tessera` binary (`tessera serve`) as a child process that a test can
//! SIGKILL or SIGTERM and restart on the same folders, and what a test reads of a
//! process from outside: its pid, its resident memory, its log.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::POLL;
use super::http::Api;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`...) of process `pid`;
/// `None` once the process is gone, or where `/proc` does not say.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The resident set size of process `pid` (`VmRSS`), in KiB; `None` once the process
/// is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS")
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

/// The real `tessera` binary (`tessera serve`) as a child process; its [`Api`] is
/// reached through it (`binary.head()`). Dropping it kills the process, so a failing
/// test leaves nothing running.
#[derive(Debug)]
pub struct Binary {
    child: Option<Child>,
    pub pid: u32,
    api: Api,
    /// Where the process's stdout and stderr go, appended across restarts.
    pub log: PathBuf,
}

impl Deref for Binary {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Binary {
    /// Starts `tessera serve --data D --plugins P --listen 127.0.0.1:<free port>` with
    /// `extra` arguments, and waits until it answers `GET /health`.
    pub async fn start(data: &Path, plugins: &Path, log: &Path, extra: &[&str]) -> Result<Self> {
        Binary::start_as("serve", data, plugins, log, extra).await
    }

    /// As [`Binary::start`], with another subcommand that serves (`dev`).
    pub async fn start_as(
        subcommand: &str,
        data: &Path,
        plugins: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Result<Self> {
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
                .arg(subcommand)
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
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?;
            let mut binary = Binary {
                pid: child.id(),
                child: Some(child),
                api: Api::of(&client, &format!("http://127.0.0.1:{port}")),
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
