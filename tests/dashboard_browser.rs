//! The dashboard (`GET /`) in a real browser: a headless Chromium, driven through
//! chromedriver with WebDriver (fantoccini), loads the page from a real host serving
//! the bank's four plugins while commands and queries arrive, and the test reads what
//! the page shows from its DOM: the plugins with their kinds, the projections with
//! their active versions and parked events, a non-zero commands/s figure from
//! `/metrics`, the latest events including the last one appended, and the "host
//! unreachable" state once the host stops. It leaves screenshots in
//! `target/dashboard.png` and `target/dashboard-offline.png`. A host run with metrics off (`/metrics` answers 404) gets a
//! page that says "no metrics" and shows the rest as usual.
//!
//! Chromium comes from Debian (`make browser` installs `chromium` and
//! `chromium-driver`); without it this test fails and says so rather than passing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::binary::free_port;
use crate::common::{Reply, TestHost, eventually, plugins};
use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium's switches for a machine with no network and no display: without the
/// network ones it stalls on its background fetches.
const CHROMIUM_ARGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1440,1000",
];

/// A chromedriver child process on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    /// Chromium's profile, fresh for this test.
    profile: TempDir,
}

impl Driver {
    async fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run `make browser` (it installs Debian's chromium and \
                 chromium-driver), or `make test`, which does it first"
            );
        }
        let port = free_port().expect("a free port");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: TempDir::new().expect("a profile folder"),
        };
        let client = reqwest::Client::new();
        eventually("chromedriver to be ready", async || {
            let status: Value = client
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match status["value"]["ready"].as_bool() {
                Some(true) => Ok(()),
                _ => Err(status.to_string()),
            }
        })
        .await;
        driver
    }

    /// A browser session on a fresh profile.
    async fn browser(&self) -> Client {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_string(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the page shows, read from its DOM in one script (one WebDriver round trip).
#[derive(Debug, Deserialize)]
struct Page {
    connection: String,
    readiness: String,
    plugins: Vec<PluginRow>,
    projections: Vec<ProjectionRow>,
    metrics_state: String,
    commands_rate: String,
    commands_text: String,
    events: Vec<u64>,
    events_note: String,
}

#[derive(Debug, Deserialize)]
struct PluginRow {
    name: String,
    kind: String,
    status: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct ProjectionRow {
    name: String,
    version: u32,
    role: String,
    version_text: String,
    parked: String,
}

const READ_PAGE: &str = r#"
const rows = (selector) => [...document.querySelectorAll(selector)];
const text = (id) => document.getElementById(id).textContent;
return {
  connection: document.getElementById('connection').dataset.state,
  readiness: document.getElementById('readiness').dataset.state,
  plugins: rows('[data-testid=plugin-row]').map((r) => ({
    name: r.dataset.name, kind: r.dataset.kind, status: r.dataset.status, text: r.innerText,
  })),
  projections: rows('[data-testid=projection-row]').map((r) => ({
    name: r.dataset.name, version: Number(r.dataset.version), role: r.dataset.role,
    version_text: r.querySelector('[data-field=version]').textContent,
    parked: r.querySelector('[data-field=parked]').textContent,
  })),
  metrics_state: document.getElementById('metrics').dataset.state,
  commands_rate: document.getElementById('commands-rate').dataset.value,
  commands_text: text('commands-rate'),
  events: rows('[data-testid=event-row]').map((r) => Number(r.dataset.position)),
  events_note: text('events-note'),
};
"#;

async fn read_page(browser: &Client) -> Result<Page, String> {
    let value = browser
        .execute(READ_PAGE, vec![])
        .await
        .map_err(|e| format!("reading the page: {e}"))?;
    serde_json::from_value(value.clone()).map_err(|e| format!("{e}: {value}"))
}

/// Commands and queries until told to stop, so that the page's rates have traffic to
/// show between two of its scrapes.
fn traffic(host: &TestHost, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let api = host.api().clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let body = json!({ "aggregate_id": "dash-1", "payload": { "amount": 5 } });
            let reply = api.send("deposit", &body, &[]).await.expect("deposit sent");
            assert_eq!(reply.status, 200, "deposit: {}", reply.body);
            api.query("account", "id=dash-1", &[])
                .await
                .expect("query sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The workspace's `target/`, where the screenshots go.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("target")
}

/// Runs `check` with a fresh Chromium session, then closes the session (Chromium
/// quits) and stops chromedriver whatever `check` found; a failure is raised after.
async fn in_browser(check: impl AsyncFnOnce(&Client)) {
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let outcome = std::panic::AssertUnwindSafe(check(&browser))
        .catch_unwind()
        .await;
    let _ = browser.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A host serving the bank, its projections live, two accounts opened.
async fn bank_host(configure: impl FnOnce(&mut tessera::Config)) -> TestHost {
    let host = TestHost::start_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ],
        configure,
    )
    .await
    .expect("host starts");
    host.wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("projections live");
    for (id, owner) in [("dash-1", "ada"), ("dash-2", "grace")] {
        let Reply { status, body, .. } = host
            .command("open-account", id, json!({ "owner": owner }))
            .await
            .expect("command sent");
        assert_eq!(status, 200, "open-account {id}: {body}");
    }
    host
}

async fn metrics_status(host: &TestHost) -> u16 {
    host.request(reqwest::Method::GET, "/metrics")
        .await
        .expect("GET /metrics")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_host_live_in_a_real_browser() {
    let host = bank_host(|_| {}).await;
    assert_eq!(
        metrics_status(&host).await,
        200,
        "metrics are on by default"
    );
    in_browser(async |browser| check_dashboard(browser, host).await).await;
}

async fn check_dashboard(browser: &Client, mut host: TestHost) {
    let projections = host.projections().await.expect("GET /projections");
    let active: BTreeMap<String, u32> = projections
        .iter()
        .filter(|p| p["role"] == "active")
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_string();
            (name, p["version"].as_u64().expect("version") as u32)
        })
        .collect();
    assert_eq!(active.len(), 2, "two active projections: {projections:#?}");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(&host, stop.clone());
    browser
        .goto(&format!("{}/", host.url))
        .await
        .expect("the page loads");
    assert_eq!(browser.title().await.expect("a title"), "Tessera");

    let expected_kinds = BTreeMap::from([
        ("account-balance", "projection"),
        ("bank-account", "command-handler"),
        ("bank-queries", "query-handler"),
        ("bank-totals", "projection"),
    ]);
    let page = eventually("every section of the page to show data", async || {
        let page = read_page(browser).await?;
        let kinds: BTreeMap<&str, &str> = page
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.kind.as_str()))
            .collect();
        let shown_active: BTreeMap<String, u32> = page
            .projections
            .iter()
            .filter(|p| p.role == "active")
            .map(|p| (p.name.clone(), p.version))
            .collect();
        let rate_shown = page.metrics_state == "ready"
            && page.commands_rate.parse::<f64>().is_ok_and(|r| r > 0.0);
        let ready = page.connection == "connected"
            && page.readiness == "ready"
            && kinds == expected_kinds
            && shown_active == active
            && page
                .projections
                .iter()
                .all(|p| p.role != "active" || p.parked == "0")
            && rate_shown
            && !page.events.is_empty();
        if ready {
            Ok(page)
        } else {
            Err(format!("{page:#?}"))
        }
    })
    .await;

    // What people read, not only the data attributes: names, kinds, versions.
    for row in &page.plugins {
        assert_eq!(row.status, "active", "{row:?}");
        assert!(row.text.contains(&row.name), "{row:?}");
        let label = row.kind.replace('-', " ");
        assert!(
            row.text.contains(&label),
            "kind {label:?} not shown: {row:?}"
        );
    }
    for row in page.projections.iter().filter(|p| p.role == "active") {
        assert!(
            row.version_text.starts_with(&format!("v{}", row.version)),
            "{row:?}"
        );
    }
    eprintln!("commands/s shown: {}", page.commands_text);

    // The traffic stops; the command appended last must appear at the top of the list.
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("the traffic task");
    let Reply { status, body, .. } = host
        .command("deposit", "dash-2", json!({ "amount": 42 }))
        .await
        .expect("command sent");
    assert_eq!(status, 200, "deposit: {body}");
    let last = body["position"].as_u64().expect("position");
    let page = eventually("the last event appended to be listed first", async || {
        let page = read_page(browser).await?;
        if page.events.first() == Some(&last) {
            Ok(page)
        } else {
            Err(format!(
                "want {last} first: {:?} ({})",
                page.events, page.events_note
            ))
        }
    })
    .await;
    eprintln!("events: {}", page.events_note);

    save_screenshot(browser, "dashboard.png").await;

    // A host that stops is shown as unreachable. The host is stopped in a task of its
    // own: an event stream still open may hold its graceful shutdown to its timeout.
    let stopping = tokio::spawn(async move { host.shutdown().await });
    eventually("the page to say the host is unreachable", async || {
        let page = read_page(browser).await?;
        if page.connection == "unreachable" {
            Ok(())
        } else {
            Err(page.connection)
        }
    })
    .await;
    let banner = browser
        .find(fantoccini::Locator::Id("offline-banner"))
        .await
        .expect("the banner");
    assert!(banner.is_displayed().await.expect("its visibility"));
    assert!(
        banner
            .text()
            .await
            .expect("its text")
            .contains("Host unreachable")
    );
    save_screenshot(browser, "dashboard-offline.png").await;
    let _ = stopping.await;
}

/// Saves the whole page (the window made as tall as the page) as a PNG.
async fn save_screenshot(browser: &Client, name: &str) {
    let height = browser
        .execute(
            "return Math.ceil(document.documentElement.scrollHeight);",
            vec![],
        )
        .await
        .expect("the page's height")
        .as_u64()
        .unwrap_or(1000);
    browser
        .set_window_size(1440, (height as u32 + 140).clamp(900, 4000))
        .await
        .expect("window resized");
    // Let the charts redraw at the new size before the picture.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = browser.screenshot().await.expect("a screenshot");
    let path = target_dir().join(name);
    std::fs::create_dir_all(path.parent().expect("target")).expect("target folder");
    std::fs::write(&path, &png).expect("screenshot written");
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_metrics_the_dashboard_says_so_and_shows_the_rest() {
    let host = bank_host(|config| config.metrics = false).await;
    assert_eq!(metrics_status(&host).await, 404, "metrics are off");
    in_browser(async |browser| {
        browser
            .goto(&format!("{}/ui", host.url))
            .await
            .expect("the page loads");
        let page = eventually("the page to show its sections", async || {
            let page = read_page(browser).await?;
            let ready = page.connection == "connected"
                && page.metrics_state == "absent"
                && page.plugins.len() == 4
                && page
                    .projections
                    .iter()
                    .filter(|p| p.role == "active")
                    .count()
                    == 2
                && page.events.len() == 2;
            if ready {
                Ok(page)
            } else {
                Err(format!("{page:#?}"))
            }
        })
        .await;
        assert_eq!(page.commands_text, "no metrics", "{page:#?}");
        assert_eq!(page.commands_rate, "", "{page:#?}");
        let note = browser
            .find(fantoccini::Locator::Id("metrics-empty"))
            .await
            .expect("the note");
        assert!(note.is_displayed().await.expect("its visibility"));
        let charts = browser
            .find(fantoccini::Locator::Id("charts"))
            .await
            .expect("the charts");
        assert!(!charts.is_displayed().await.expect("their visibility"));
    })
    .await;
}
