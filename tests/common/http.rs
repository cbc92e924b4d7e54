//! The host's HTTP API as the tests call it: [`Api`] (a base URL and a client) with one
//! method per endpoint a test talks to, and [`Reply`], a response as the tests look at
//! it. An in-process [`super::TestHost`] and a child process [`super::binary::Binary`]
//! both dereference to an [`Api`], so the same helper talks to either.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::eventually;

/// The pause between two looks of [`Api::wait_live_for`].
const LIVE_POLL: Duration = Duration::from_millis(50);

/// A host's HTTP API: where it is, and the client to reach it with.
#[derive(Debug, Clone)]
pub struct Api {
    pub url: String,
    pub client: reqwest::Client,
}

impl Api {
    /// The API at `url` through `client`: one client per task, or one with a timeout.
    pub fn of(client: &reqwest::Client, url: &str) -> Api {
        Api {
            url: url.to_string(),
            client: client.clone(),
        }
    }

    /// The same API through a client of its own whose requests give up after `timeout`,
    /// so that a request the host never answers fails its test instead of hanging it.
    pub fn with_timeout(&self, timeout: Duration) -> Api {
        Api {
            url: self.url.clone(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The same API through a client of its own that sends `token` as the bearer of
    /// every request: a verified caller.
    pub fn with_bearer(&self, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token fit for a header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Api {
            url: self.url.clone(),
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Sends `method` to `path` with an optional JSON body and bearer token.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Reply> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path} got no response"))?;
        Reply::read(response)
            .await
            .with_context(|| format!("{method} {path}: unreadable response"))
    }

    /// Sends a request with any method and no body.
    pub async fn request(&self, method: reqwest::Method, path: &str) -> Result<Reply> {
        self.call(method, path, None, None).await
    }

    /// `GET path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let reply = self.request(reqwest::Method::GET, path).await?;
        Ok((reply.status, reply.body))
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

    /// Waits until `GET /ready` answers 200: every projection caught up.
    pub async fn wait_ready(&self) {
        eventually("the host is ready", async || {
            let (status, body) = self.get("/ready").await.map_err(|e| e.to_string())?;
            if status == 200 {
                Ok(())
            } else {
                Err(body.to_string())
            }
        })
        .await;
    }

    // --- Commands ------------------------------------------------------------------

    /// Sends a command body with extra headers; returns the whole reply, headers included.
    pub async fn send(&self, name: &str, body: &Value, headers: &[(&str, &str)]) -> Result<Reply> {
        let mut request = self
            .client
            .post(format!("{}/commands/{name}", self.url))
            .json(body);
        for (header, value) in headers {
            request = request.header(*header, *value);
        }
        Reply::read(request.send().await?).await
    }

    /// Sends command `name` for aggregate `aggregate_id`.
    pub async fn command(&self, name: &str, aggregate_id: &str, payload: Value) -> Result<Reply> {
        let body = serde_json::json!({ "aggregate_id": aggregate_id, "payload": payload });
        self.send(name, &body, &[]).await
    }

    // --- The log -------------------------------------------------------------------

    /// The write store's head, from `GET /health`.
    pub async fn head(&self) -> Result<u64> {
        let (status, body) = self.get("/health").await?;
        ensure!(status == 200, "GET /health failed: {status} {body}");
        body["head"].as_u64().context("head")
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
            ensure!(status == 200, "reading {stream} failed: {status} {page}");
            events.extend(page["events"].as_array().context("events")?.iter().cloned());
            match page["next_after_version"].as_u64() {
                Some(next) => after = next,
                None => return Ok(events),
            }
        }
    }

    /// The whole global log, read page by page through `GET /events`: every page must
    /// parse.
    pub async fn read_log(&self) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .get(&format!("/events?after={after}&limit=1000"))
                .await?;
            ensure!(status == 200, "reading the log failed: {status} {page}");
            let batch = page["events"].as_array().context("events")?;
            if batch.is_empty() {
                return Ok(events);
            }
            events.extend(batch.iter().cloned());
            after = page["next_after"].as_u64().context("next_after")?;
        }
    }

    // --- Queries -------------------------------------------------------------------

    /// `GET /queries/{name}?{query}` with extra headers. `query` must already be
    /// URL-safe.
    pub async fn query(
        &self,
        name: &str,
        query: &str,
        headers: &[(&str, String)],
    ) -> Result<Reply> {
        let mut target = format!("{}/queries/{name}", self.url);
        if !query.is_empty() {
            target.push('?');
            target.push_str(query);
        }
        let mut request = self.client.get(target);
        for (header, value) in headers {
            request = request.header(*header, value.as_str());
        }
        Reply::read(request.send().await?).await
    }

    /// `POST /queries/{name}` with a JSON body of parameters and extra headers.
    pub async fn query_post(
        &self,
        name: &str,
        params: &Value,
        headers: &[(&str, String)],
    ) -> Result<Reply> {
        let mut request = self
            .client
            .post(format!("{}/queries/{name}", self.url))
            .json(params);
        for (header, value) in headers {
            request = request.header(*header, value.as_str());
        }
        Reply::read(request.send().await?).await
    }

    /// Asks a query until it answers at least as fresh as `position`: each try waits on
    /// the host (`Tessera-Min-Position`, `Tessera-Max-Wait`), and a `stale` answer, or
    /// a projection not set up yet (`projection_unavailable`), is retried, a bounded
    /// number of times.
    pub async fn query_at(&self, name: &str, query: &str, position: u64) -> Result<Reply> {
        let headers = [
            ("tessera-min-position", position.to_string()),
            ("tessera-max-wait", "5000".to_string()),
        ];
        let mut last = None;
        for _ in 0..100 {
            let reply = self.query(name, query, &headers).await?;
            if reply.status == 503 && reply.body["error"]["code"] == "stale" {
                last = Some(reply);
                continue;
            }
            if reply.status == 503 && reply.body["error"]["code"] == "projection_unavailable" {
                last = Some(reply);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            return Ok(reply);
        }
        bail!("query {name} never reached position {position}: {last:?}")
    }

    /// Every account through `accounts`, page by page (at least as fresh as
    /// `position`).
    pub async fn all_accounts(&self, limit: usize, position: u64) -> Result<Vec<Value>> {
        let mut accounts = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut query = format!("limit={limit}");
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={cursor}"));
            }
            let reply = self.query_at("accounts", &query, position).await?;
            ensure!(reply.status == 200, "accounts failed: {}", reply.body);
            let items = reply.body["items"].as_array().context("items")?;
            accounts.extend(items.iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(accounts),
            }
        }
        bail!("the accounts walk never ended")
    }

    // --- Projections ---------------------------------------------------------------

    /// `GET /projections`: every projection version's status.
    pub async fn projections(&self) -> Result<Vec<Value>> {
        let (status, body) = self.get("/projections").await?;
        ensure!(status == 200, "GET /projections failed: {status} {body}");
        body["projections"]
            .as_array()
            .cloned()
            .context("projections list")
    }

    /// The newest listed version (and generation) of projection `name`.
    pub async fn projection(&self, name: &str) -> Result<Option<Value>> {
        Ok(self
            .projections()
            .await?
            .into_iter()
            .filter(|p| p["name"] == name)
            .max_by_key(|p| (p["version"].as_u64(), p["generation"].as_u64())))
    }

    /// `GET /projections/{name}/parked`: the events the projection parked.
    pub async fn parked(&self, name: &str) -> Result<Vec<Value>> {
        let (status, body) = self.get(&format!("/projections/{name}/parked")).await?;
        ensure!(
            status == 200,
            "GET parked of {name} failed: {status} {body}"
        );
        body["parked"].as_array().cloned().context("parked list")
    }

    /// `PUT /projections/{name}/policy` with `change`; asserts success, returns the
    /// policy.
    pub async fn set_policy(&self, name: &str, change: Value) -> Value {
        let path = format!("/projections/{name}/policy");
        let reply = self
            .call(reqwest::Method::PUT, &path, Some(&change), None)
            .await
            .expect("policy request");
        reply.ok().clone()
    }

    /// Waits until the newest version of projection `name` satisfies `check`; returns
    /// its status.
    pub async fn wait_projection(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, async || match self.projection(name).await {
            Ok(Some(status)) if check(&status) => Ok(status),
            Ok(last) => Err(format!("{last:?}")),
            Err(error) => Err(format!("{error:#}")),
        })
        .await
    }

    /// Waits until projection `name` is live at least at the head as it is now.
    pub async fn wait_live_at_head(&self, name: &str) -> Value {
        let head = self.head().await.expect("head");
        self.wait_projection(name, &format!("{name} live at {head}"), |p| {
            p["status"] == "live" && p["checkpoint"].as_u64() >= Some(head)
        })
        .await
    }

    /// Waits (bounded) until every projection is `live` at the write head and `names`
    /// are all among them; returns their statuses.
    pub async fn wait_live(&self, names: &[&str]) -> Result<Vec<Value>> {
        // Up to two minutes: a rebuild of thousands of events on a slow machine.
        self.wait_live_for(names, 2400).await
    }

    /// [`Api::wait_live`] with at most `polls` looks, 50 ms apart.
    pub async fn wait_live_for(&self, names: &[&str], polls: usize) -> Result<Vec<Value>> {
        let mut last = Vec::new();
        for _ in 0..polls {
            let head = self.head().await?;
            last = self.projections().await?;
            let all_named = names
                .iter()
                .all(|name| last.iter().any(|p| p["name"] == *name));
            let all_live = last.iter().all(|p| {
                p["status"] == "live"
                    && p["checkpoint"].as_u64() == Some(head)
                    && p["lag_events"] == 0
            });
            if all_named && all_live {
                return Ok(last);
            }
            tokio::time::sleep(LIVE_POLL).await;
        }
        bail!("the projections never all became live at the head: {last:#?}")
    }

    // --- Plugins -------------------------------------------------------------------

    /// `GET /plugins`: every plugin file with its status and last error.
    pub async fn plugins(&self) -> Result<Vec<Value>> {
        let (status, body) = self.get("/plugins").await?;
        ensure!(status == 200, "GET /plugins failed: {status} {body}");
        body["plugins"].as_array().cloned().context("plugins list")
    }

    /// The `GET /plugins` entry of the file named `file`.
    pub async fn plugin(&self, file: &str) -> Result<Option<Value>> {
        Ok(self
            .plugins()
            .await?
            .into_iter()
            .find(|entry| entry["file"] == file))
    }

    /// `PUT /plugins/{name}` with `bytes`, and the bearer `token` if given.
    pub async fn deploy(&self, name: &str, bytes: Vec<u8>, token: Option<&str>) -> Result<Reply> {
        let mut request = self
            .client
            .put(format!("{}/plugins/{name}", self.url))
            .header("content-type", "application/wasm")
            .body(bytes);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await?).await
    }

    /// `PUT /plugins/{name}` with the bytes of the plugin file `plugin`; asserts
    /// success.
    pub async fn deploy_file(&self, name: &str, plugin: &str) -> Reply {
        let bytes = std::fs::read(plugin).unwrap_or_else(|e| panic!("cannot read {plugin}: {e}"));
        let reply = self
            .deploy(name, bytes, None)
            .await
            .unwrap_or_else(|e| panic!("deploying {plugin} as {name}: {e:#}"));
        assert!(
            (200..300).contains(&reply.status),
            "deploying {plugin} as {name} failed: {} {}",
            reply.status,
            reply.body
        );
        reply
    }

    /// `DELETE /plugins/{name}`, with the bearer `token` if given.
    pub async fn remove(&self, name: &str, token: Option<&str>) -> Result<Reply> {
        let path = format!("/plugins/{name}");
        self.call(reqwest::Method::DELETE, &path, None, token).await
    }

    /// `POST /plugins/{name}/rollback`, with the bearer `token` if given.
    pub async fn rollback(&self, name: &str, token: Option<&str>) -> Result<Reply> {
        let path = format!("/plugins/{name}/rollback");
        self.call(reqwest::Method::POST, &path, None, token).await
    }
}

/// The headers that ask a query to answer at least as fresh as log position
/// `position`, if given, the host waiting up to 30 s for its read models to get there.
pub fn at_least(position: Option<u64>) -> Vec<(&'static str, String)> {
    match position {
        Some(position) => vec![
            ("tessera-min-position", position.to_string()),
            ("tessera-max-wait", "30000".to_string()),
        ],
        None => Vec::new(),
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
