//! What an operator follows a request by: the request id (made by the host, or the
//! client's own when it is usable) in the response header, the error body, the events'
//! metadata and the plugin's log lines, and `--log-format json` log lines that a log
//! collector can parse.

use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::deploy::file_name;
use crate::common::plugins;
use anyhow::Result;
use serde_json::{Value, json};
use tempfile::TempDir;

async fn start(dir: &TempDir) -> Result<Binary> {
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    for plugin in [plugins::BANK_ACCOUNT, plugins::TEST_ROGUE_COMMANDS] {
        std::fs::copy(plugin, plugins_dir.join(file_name(plugin)))?;
    }
    Binary::start(
        &dir.path().join("data"),
        &plugins_dir,
        &dir.path().join("host.log"),
        &["--log-format", "json"],
    )
    .await
}

async fn send(
    host: &Binary,
    command: &str,
    id: &str,
    payload: Value,
    request_id: Option<&str>,
) -> Result<(u16, Option<String>, Value)> {
    let mut request = host
        .client
        .post(format!("{}/commands/{command}", host.url))
        .json(&json!({ "aggregate_id": id, "payload": payload }));
    if let Some(request_id) = request_id {
        request = request.header("x-request-id", request_id);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Ok((status, header, response.json().await?))
}

/// The log file's lines that parse as JSON objects.
fn json_lines(host: &Binary) -> Vec<Value> {
    host.log_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

async fn stream_metadata(host: &Binary, stream: &str) -> Result<Value> {
    let page: Value = host
        .client
        .get(format!("{}/streams/{stream}", host.url))
        .send()
        .await?
        .json()
        .await?;
    Ok(page["events"][0]["metadata"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_command_into_its_events_its_plugin_logs_and_its_errors()
-> Result<()> {
    let dir = TempDir::new()?;
    let host = start(&dir).await?;

    // A host-made id: a UUID, in the header and in the events' metadata.
    let (status, header, _) = send(
        &host,
        "open-account",
        "ids-1",
        json!({"owner": "ada"}),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let made = header.expect("every response has an x-request-id");
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_eq!(
        stream_metadata(&host, "account-ids-1").await?["request_id"],
        json!(made)
    );

    // The client's own id is kept, and reaches the plugin's log line.
    let text = format!("said-{}", uuid::Uuid::new_v4());
    let (status, header, _) = send(
        &host,
        "say",
        "ids-2",
        json!({ "text": text }),
        Some("client-trace-42"),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(header.as_deref(), Some("client-trace-42"));
    assert_eq!(
        stream_metadata(&host, "rogue-ids-2").await?["request_id"],
        json!("client-trace-42")
    );
    // The plugin's line is a JSON object naming the plugin and the request.
    let line = crate::common::eventually("the plugin's log line", async || {
        json_lines(&host)
            .into_iter()
            .find(|line| line["message"] == json!(text))
            .ok_or_else(|| "not logged yet".to_string())
    })
    .await;
    assert_eq!(line["plugin"], json!("test-rogue-commands"), "{line}");
    assert_eq!(line["request_id"], json!("client-trace-42"), "{line}");

    // An id that is not a short visible token is replaced, not echoed.
    let (_, header, _) = send(
        &host,
        "open-account",
        "ids-3",
        json!({"owner": "bo"}),
        Some(&"x".repeat(500)),
    )
    .await?;
    let replaced = header.expect("an id");
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");

    // A refusal's body names the same id as its header.
    let (status, header, body) = send(
        &host,
        "open-account",
        "ids-1",
        json!({"owner": "ada"}),
        Some("refused-7"),
    )
    .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(header.as_deref(), Some("refused-7"));
    assert_eq!(body["request_id"], json!("refused-7"), "{body}");

    // Every line the host wrote is JSON: nothing a collector would choke on.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = host.log_text();
    let bad: Vec<&str> = text
        .lines()
        .filter(|line| serde_json::from_str::<Value>(line).is_err())
        .collect();
    assert!(bad.is_empty(), "lines that are not JSON: {bad:?}");
    Ok(())
}
