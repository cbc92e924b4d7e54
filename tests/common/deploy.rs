//! Helpers for the deployment tests: a host with a custom configuration and named
//! plugin files, the admin endpoints (`PUT`/`DELETE /plugins/{name}`, rollback), the
//! plugin listing, changes to the plugins folder, new versions of a plugin's code
//! (a custom section appended), and bounded waits.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use super::{Reply, TestHost};

/// The longest a bounded wait waits.
pub const WAIT: Duration = Duration::from_secs(30);
/// The pause between two polls of a bounded wait.
const POLL: Duration = Duration::from_millis(10);

/// Starts a host whose plugins folder holds `files`, each `(name in the folder, file
/// to copy)`, with the default configuration changed by `configure` (an admin token,
/// no watcher...).
pub async fn start_host(
    files: &[(&str, &str)],
    configure: impl FnOnce(&mut tessera::Config),
) -> Result<TestHost> {
    let dir = Arc::new(TempDir::new()?);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for (name, source) in files {
        std::fs::copy(source, plugins.join(name)).with_context(|| format!("copy {source}"))?;
    }
    TestHost::start_configured(dir, configure).await
}

/// The bytes of a plugin file.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// `PUT /plugins/{name}` with `bytes`, and the bearer `token` if given.
pub async fn deploy(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    bytes: Vec<u8>,
    token: Option<&str>,
) -> Result<Reply> {
    let mut request = client
        .put(format!("{url}/plugins/{name}"))
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await?).await
}

/// `DELETE /plugins/{name}`, with the bearer `token` if given.
pub async fn remove(host: &TestHost, name: &str, token: Option<&str>) -> Result<Reply> {
    let mut request = host.client.delete(format!("{}/plugins/{name}", host.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await?).await
}

/// `POST /plugins/{name}/rollback`, with the bearer `token` if given.
pub async fn rollback(host: &TestHost, name: &str, token: Option<&str>) -> Result<Reply> {
    let mut request = host
        .client
        .post(format!("{}/plugins/{name}/rollback", host.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await?).await
}

/// The entries of `GET /plugins`.
pub async fn listing(host: &TestHost) -> Result<Vec<Value>> {
    let (status, body) = host.get("/plugins").await?;
    anyhow::ensure!(status == 200, "GET /plugins failed: {status} {body}");
    Ok(body["plugins"].as_array().context("plugins")?.clone())
}

/// The listing entry of the file named `file`.
pub async fn entry(host: &TestHost, file: &str) -> Result<Option<Value>> {
    Ok(listing(host)
        .await?
        .into_iter()
        .find(|entry| entry["file"] == file))
}

/// A component's bytes with a custom section named `tessera-test` holding `tag`
/// appended: the same code under another digest, which a host takes for a new
/// version of the plugin.
pub fn with_custom_section(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"tessera-test";
    let mut contents = Vec::new();
    leb128(name.len(), &mut contents);
    contents.extend_from_slice(name);
    contents.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // section id 0: a custom section
    leb128(contents.len(), &mut out);
    out.extend(contents);
    out
}

/// Puts `bytes` at `dir/file` the safe way: written under a name the host ignores,
/// then renamed into place, so the host never reads a partial file.
pub fn install(dir: &Path, file: &str, bytes: &[u8]) {
    let partial = dir.join(format!(".{file}.partial"));
    std::fs::write(&partial, bytes).expect("write the partial file");
    std::fs::rename(&partial, dir.join(file)).expect("rename into place");
}

/// Overwrites `dir/file` in place (truncate, then write), as `cp` does: the host may
/// see the file half written, and must cope.
pub fn overwrite(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).expect("overwrite");
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`]; panics with `what`
/// and the last thing seen otherwise.
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
