//! End-to-end tests of the command path over HTTP: a real host on `127.0.0.1:0`, a real
//! SQLite file, and the plugins built from `plugins/`.
//!
//! The tests walk the API contract status code by status code, then the guarantees
//! behind it: concurrent writers in one host and across two hosts on one file,
//! idempotency keys, and a restart.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::{Api, Reply, TestHost, plugins};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// The largest body the host accepts (`tessera::http::MAX_BODY`).
const MAX_BODY: usize = 1 << 20;

// --- Helpers ---------------------------------------------------------------------

/// A host serving the bank account plugin.
async fn bank_host() -> TestHost {
    TestHost::start(&[plugins::BANK_ACCOUNT])
        .await
        .expect("host starts")
}

/// The body of `POST /commands/{name}`.
fn command(aggregate_id: &str, payload: Value) -> Value {
    json!({ "aggregate_id": aggregate_id, "payload": payload })
}

/// Sends a command with no extra headers.
async fn send(host: &TestHost, name: &str, aggregate_id: &str, payload: Value) -> Reply {
    host.send(name, &command(aggregate_id, payload), &[])
        .await
        .expect("request sent")
}

/// Opens account `id`, asserting success.
async fn open(host: &TestHost, id: &str) -> Reply {
    let reply = send(host, "open-account", id, json!({"owner": "ada"})).await;
    reply.ok();
    reply
}

/// Deposits `amount` into account `id`; the caller asserts on the reply.
async fn deposit(host: &TestHost, id: &str, amount: u64) -> Reply {
    send(host, "deposit", id, json!({ "amount": amount })).await
}

/// Withdraws `amount` from account `id`; the caller asserts on the reply.
async fn withdraw(host: &TestHost, id: &str, amount: u64) -> Reply {
    send(host, "withdraw", id, json!({ "amount": amount })).await
}

/// The versions of some events, in order.
fn versions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["version"].as_u64().expect("version"))
        .collect()
}

/// The positions of some events, in order.
fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["position"].as_u64().expect("position"))
        .collect()
}

/// The balance an account's events fold to, computed here independently of the plugin.
fn balance(events: &[Value]) -> i128 {
    events
        .iter()
        .map(|event| match event["type"].as_str() {
            Some("Deposited") => i128::from(event["data"]["amount"].as_u64().expect("amount")),
            Some("Withdrawn") => -i128::from(event["data"]["amount"].as_u64().expect("amount")),
            _ => 0,
        })
        .sum()
}

/// Asserts a stream's versions run 1, 2, ... `count` with no gap or repeat.
fn assert_gap_free(events: &[Value], count: u64) {
    assert_eq!(
        versions(events),
        (1..=count).collect::<Vec<_>>(),
        "stream versions are not 1..={count}"
    );
}

/// How many events the whole log holds.
async fn log_length(host: &TestHost) -> usize {
    host.read_log().await.expect("log").len()
}

/// Runs `clients` tasks, each with its own HTTP client, each depositing 1 into account
/// `id` `per_client` times, one request after the other, against the host at `url`.
fn spawn_depositors(
    tasks: &mut JoinSet<Vec<Reply>>,
    url: &str,
    id: &str,
    clients: usize,
    per_client: usize,
) {
    for _ in 0..clients {
        let url = url.to_string();
        let body = command(id, json!({"amount": 1}));
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut replies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let reply = Api::of(&client, &url)
                    .send("deposit", &body, &[])
                    .await
                    .expect("request sent");
                replies.push(reply);
            }
            replies
        });
    }
}

/// Sends the same command `count` times at once, each from its own client, all
/// released together so that several are in flight before the first one commits.
async fn burst(
    host: &TestHost,
    name: &'static str,
    body: Value,
    headers: &[(&'static str, &'static str)],
    count: usize,
) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (url, body, headers, barrier) = (
            host.url.clone(),
            body.clone(),
            headers.to_vec(),
            barrier.clone(),
        );
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            barrier.wait().await;
            let reply = Api::of(&client, &url)
                .send(name, &body, &headers)
                .await
                .expect("request sent");
            vec![reply]
        });
    }
    join_all(tasks).await
}

/// Waits for every task and returns all replies.
async fn join_all(mut tasks: JoinSet<Vec<Reply>>) -> Vec<Reply> {
    let mut replies = Vec::new();
    while let Some(batch) = tasks.join_next().await {
        replies.extend(batch.expect("client task panicked"));
    }
    replies
}

// --- 200: success ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_successful_command_returns_its_commit() {
    let host = bank_host().await;

    let opened = host
        .send(
            "open-account",
            &json!({
                "aggregate_id": "a1",
                "payload": {"owner": "ada"},
                "metadata": {"correlation_id": "corr-1", "causation_id": "cause-1"},
            }),
            &[("tessera-principal", "user-7")],
        )
        .await
        .unwrap();
    let body = opened.ok();
    // Exactly the documented fields, nothing else.
    let fields: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["stream", "version", "position", "events"])
    );
    assert_eq!(body["stream"], "account-a1");
    assert_eq!(body["version"], 1);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["stream"], "account-a1");
    assert_eq!(event["version"], 1);
    assert_eq!(event["type"], "AccountOpened");
    assert_eq!(event["data"], json!({"owner": "ada"}));
    assert_eq!(event["metadata"]["correlation_id"], "corr-1");
    assert_eq!(event["metadata"]["causation_id"], "cause-1");
    assert_eq!(event["metadata"]["principal"], "user-7");
    assert!(
        event["metadata"]["command_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(event["timestamp"].as_str().is_some_and(|t| !t.is_empty()));
    // `position` is the last event's position, and the headers repeat the commit.
    assert_eq!(body["position"], event["position"]);
    assert_eq!(opened.header("etag"), Some("\"1\""));
    let position = body["position"].as_u64().unwrap();
    assert_eq!(
        opened.header("tessera-position"),
        Some(position.to_string().as_str())
    );
    assert_eq!(opened.header("idempotent-replayed"), None);
    assert!(opened.header("x-request-id").is_some());

    let deposited = deposit(&host, "a1", 5).await;
    let body = deposited.ok();
    assert_eq!(body["stream"], "account-a1");
    assert_eq!(body["version"], 2);
    assert_eq!(body["events"][0]["version"], 2);
    assert_eq!(body["events"][0]["type"], "Deposited");
    assert_eq!(body["events"][0]["data"], json!({"amount": 5}));
    assert_eq!(body["position"], body["events"][0]["position"]);
    assert!(body["position"].as_u64().unwrap() > position);
    assert_eq!(deposited.header("etag"), Some("\"2\""));
    // Without metadata, correlation and causation default to the command's own id.
    let metadata = &body["events"][0]["metadata"];
    assert_eq!(metadata["correlation_id"], metadata["command_id"]);
    assert_eq!(metadata["causation_id"], metadata["command_id"]);
    assert!(metadata.get("principal").is_none());

    // What the commands returned is what was stored.
    let stored = host.read_stream("account-a1").await.unwrap();
    assert_eq!(stored, vec![event.clone(), body["events"][0].clone()]);
}

// --- 400: bad requests -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_bodies_are_400_bad_request() {
    let host = bank_host().await;
    let too_long_id = "x".repeat(257);
    let cases: Vec<(&str, String)> = vec![
        (
            "malformed JSON",
            r#"{"aggregate_id": "a1", "payload": "#.into(),
        ),
        ("not an object", "[1, 2]".into()),
        (
            "missing aggregate_id",
            r#"{"payload": {"owner": "ada"}}"#.into(),
        ),
        ("missing payload", r#"{"aggregate_id": "a1"}"#.into()),
        (
            "an unknown body field",
            r#"{"aggregate_id": "a1", "payload": {"owner": "ada"}, "extra": 1}"#.into(),
        ),
        (
            "an unknown metadata field",
            r#"{"aggregate_id": "a1", "payload": {"owner": "ada"}, "metadata": {"who": 1}}"#.into(),
        ),
        (
            "aggregate_id not a string",
            r#"{"aggregate_id": 1, "payload": {"owner": "ada"}}"#.into(),
        ),
        (
            "an empty aggregate_id",
            r#"{"aggregate_id": "", "payload": {"owner": "ada"}}"#.into(),
        ),
        (
            "an aggregate_id over 256 bytes",
            command(&too_long_id, json!({"owner": "ada"})).to_string(),
        ),
        (
            "a control character in aggregate_id",
            command("a\n1", json!({"owner": "ada"})).to_string(),
        ),
    ];
    for (why, body) in cases {
        let reply = host
            .post_raw("/commands/open-account", Some("application/json"), body)
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{why}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // None of them appended anything.
    assert_eq!(log_length(&host).await, 0);
    // The bound counts characters, as the description's maxLength does: 256 of them
    // that take two bytes each are one id.
    let wide_id = "é".repeat(256);
    let reply = host
        .post_raw(
            "/commands/open-account",
            Some("application/json"),
            command(&wide_id, json!({"owner": "ada"})).to_string(),
        )
        .await
        .unwrap();
    reply.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_headers_are_400_bad_request() {
    let host = bank_host().await;
    open(&host, "a1").await;
    let too_long_key = "k".repeat(256);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("If-Match that is not a version", "if-match", "abc"),
        ("If-Match that is negative", "if-match", "\"-1\""),
        ("If-Match that is a weak tag", "if-match", "W/\"1\""),
        ("If-Match that is a wildcard", "if-match", "*"),
        ("an empty Idempotency-Key", "idempotency-key", ""),
        (
            "an Idempotency-Key over 255",
            "idempotency-key",
            &too_long_key,
        ),
    ];
    for (why, header, value) in cases {
        let reply = host
            .send(
                "deposit",
                &command("a1", json!({"amount": 1})),
                &[(header, value)],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{why}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // A header value that is not visible ASCII.
    let reply = Reply::read(
        host.client
            .post(format!("{}/commands/deposit", host.url))
            .json(&command("a1", json!({"amount": 1})))
            .header(
                "tessera-principal",
                reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            )
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    reply.assert_error(400, "bad_request");
    // Only the opening was appended.
    assert_gap_free(&host.read_stream("account-a1").await.unwrap(), 1);
}

// --- 404, 405 ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_command_is_404_unknown_command() {
    let host = bank_host().await;
    let reply = send(&host, "close-account", "a1", json!({})).await;
    reply.assert_error(404, "unknown_command");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("close-account"),
        "the message names the command: {}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_route_is_404_not_found() {
    let host = bank_host().await;
    for (method, path) in [
        (Method::GET, "/nowhere"),
        (Method::POST, "/commands"),
        (Method::POST, "/commands/deposit/extra"),
        (Method::GET, "/streams"),
    ] {
        let reply = host.request(method.clone(), path).await.unwrap();
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        reply.assert_error(404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_with_the_wrong_method_is_405_method_not_allowed() {
    let host = bank_host().await;
    for (method, path) in [
        (Method::GET, "/commands/deposit"),
        (Method::PUT, "/commands/deposit"),
        (Method::POST, "/events"),
        (Method::DELETE, "/streams/account-a1"),
        (Method::POST, "/health"),
    ] {
        let reply = host.request(method.clone(), path).await.unwrap();
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        reply.assert_error(405, "method_not_allowed");
    }
}

// --- 413, 415 ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_is_not_declared_json_is_415_unsupported_media_type() {
    let host = bank_host().await;
    let valid = command("a1", json!({"owner": "ada"})).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let reply = host
            .post_raw("/commands/open-account", content_type, valid.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 415, "{content_type:?}: {}", reply.body);
        reply.assert_error(415, "unsupported_media_type");
    }
    assert_eq!(log_length(&host).await, 0);
}

/// A valid `open-account` body of exactly `size` bytes (the owner's name is padding).
fn open_account_body_of(size: usize) -> String {
    let empty = command("big", json!({"owner": ""})).to_string();
    let body = command("big", json!({"owner": "x".repeat(size - empty.len())})).to_string();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_over_one_mebibyte_is_413_payload_too_large() {
    let host = bank_host().await;
    let reply = host
        .post_raw(
            "/commands/open-account",
            Some("application/json"),
            open_account_body_of(MAX_BODY + 1),
        )
        .await
        .unwrap();
    reply.assert_error(413, "payload_too_large");
    assert_eq!(log_length(&host).await, 0);

    // The limit is "over 1 MiB": a body of exactly 1 MiB is served.
    let reply = host
        .post_raw(
            "/commands/open-account",
            Some("application/json"),
            open_account_body_of(MAX_BODY),
        )
        .await
        .unwrap();
    assert_eq!(reply.ok()["version"], 1);
}

// --- 422: validation and business rules ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_input_is_422_validation_failed_naming_the_field() {
    let host = bank_host().await;
    let reply = send(&host, "open-account", "a1", json!({"owner": ""})).await;
    reply.assert_error(422, "validation_failed");
    assert!(
        reply.body["error"]["details"]["owner"].is_string(),
        "details name the field: {}",
        reply.body
    );

    open(&host, "a1").await;
    for payload in [
        json!({"amount": 0}),
        json!({"amount": -1}),
        json!({"amount": 1.5}),
        json!({"amount": "5"}),
        json!({}),
    ] {
        let reply = send(&host, "deposit", "a1", payload.clone()).await;
        reply.assert_error(422, "validation_failed");
        let details = reply.body["error"]["details"].as_object().unwrap();
        assert!(
            details.get("amount").is_some_and(Value::is_string),
            "{payload}: details name the field amount: {}",
            reply.body
        );
        assert_eq!(details.len(), 1, "only amount is wrong: {}", reply.body);
    }
    // The refusals appended nothing.
    assert_gap_free(&host.read_stream("account-a1").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_business_rule_refusal_is_422_rejected_with_the_rule_code() {
    let host = bank_host().await;
    deposit(&host, "a1", 5)
        .await
        .assert_refused("account_not_open");
    withdraw(&host, "a1", 5)
        .await
        .assert_refused("account_not_open");
    // An account that was only refused has no stream at all.
    let (status, body) = host.get("/streams/account-a1").await.unwrap();
    crate::common::assert_error(status, &body, 404, "unknown_stream");

    open(&host, "a1").await;
    send(&host, "open-account", "a1", json!({"owner": "bob"}))
        .await
        .assert_refused("account_already_open");
    deposit(&host, "a1", 5).await.ok();
    withdraw(&host, "a1", 6)
        .await
        .assert_refused("insufficient_funds");
    withdraw(&host, "a1", 5).await.ok();
    withdraw(&host, "a1", 1)
        .await
        .assert_refused("insufficient_funds");

    let events = host.read_stream("account-a1").await.unwrap();
    assert_gap_free(&events, 3);
    assert_eq!(balance(&events), 0);
}

// --- 409: optimistic concurrency with If-Match ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_with_a_stale_version_is_409_conflict() {
    let host = bank_host().await;
    open(&host, "a1").await;
    deposit(&host, "a1", 5).await.ok();
    let deposit_one = command("a1", json!({"amount": 1}));

    // The client read version 1, but the stream is at 2.
    let reply = host
        .send("deposit", &deposit_one, &[("if-match", "\"1\"")])
        .await
        .unwrap();
    reply.assert_error(409, "conflict");
    assert_eq!(
        reply.body["error"]["details"],
        json!({"stream": "account-a1", "expected": 1, "actual": 2})
    );
    // A version from the future is just as stale.
    let reply = host
        .send("deposit", &deposit_one, &[("if-match", "\"9\"")])
        .await
        .unwrap();
    reply.assert_error(409, "conflict");
    assert_gap_free(&host.read_stream("account-a1").await.unwrap(), 2);

    // Naming the current version succeeds; quotes are optional.
    let reply = host
        .send("deposit", &deposit_one, &[("if-match", "\"2\"")])
        .await
        .unwrap();
    assert_eq!(reply.ok()["version"], 3);
    assert_eq!(reply.header("etag"), Some("\"3\""));
    let reply = host
        .send("deposit", &deposit_one, &[("if-match", "3")])
        .await
        .unwrap();
    assert_eq!(reply.ok()["version"], 4);

    // Version 0 means "the stream must not exist yet".
    let open_b = command("b1", json!({"owner": "bob"}));
    let reply = host
        .send("open-account", &open_b, &[("if-match", "\"0\"")])
        .await
        .unwrap();
    assert_eq!(reply.ok()["version"], 1);
    let reply = host
        .send(
            "deposit",
            &command("b1", json!({"amount": 1})),
            &[("if-match", "\"0\"")],
        )
        .await
        .unwrap();
    reply.assert_error(409, "conflict");

    let events = host.read_stream("account-a1").await.unwrap();
    assert_gap_free(&events, 4);
    assert_eq!(balance(&events), 7);
}

// --- 500: a plugin that traps ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trapping_plugin_is_500_and_the_host_keeps_serving() {
    let host = TestHost::start(&[plugins::BANK_ACCOUNT, plugins::TEST_TRAP])
        .await
        .unwrap();

    let reply = send(&host, "explode", "f1", json!({})).await;
    reply.assert_error(500, "plugin_failed");
    // The client gets the request id to quote, and it is this request's id.
    assert_eq!(
        reply.body["request_id"].as_str(),
        reply.header("x-request-id"),
        "{}",
        reply.body
    );
    // The guest's panic text is for the log, not for the client.
    let text = reply.body.to_string();
    assert!(!text.contains("the fuse was lit"), "leaked: {text}");
    assert!(!text.contains("panicked"), "leaked: {text}");
    assert!(reply.body["error"].get("details").is_none(), "{text}");

    // The same plugin, the same aggregate, the next request: served, and the explosion
    // appended nothing.
    let reply = send(&host, "ping", "f1", json!({})).await;
    assert_eq!(reply.ok()["stream"], "fuse-f1");
    assert_eq!(reply.ok()["version"], 1);
    // Another plugin on the same host is unaffected.
    open(&host, "a1").await;
    assert_eq!(deposit(&host, "a1", 5).await.ok()["version"], 2);
    // And the trap can be triggered again, without harm.
    send(&host, "explode", "f1", json!({}))
        .await
        .assert_error(500, "plugin_failed");
    assert_eq!(
        send(&host, "ping", "f1", json!({})).await.ok()["version"],
        2
    );
}

// --- Reading: streams, the log, health ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reading_a_stream_pages_by_version() {
    let host = bank_host().await;
    open(&host, "a1").await;
    for amount in 1..=4 {
        deposit(&host, "a1", amount).await.ok();
    }
    // Another stream's events do not show up in this one.
    open(&host, "b1").await;

    let page = |query: &'static str| {
        let host = &host;
        async move {
            let (status, body) = host
                .get(&format!("/streams/account-a1{query}"))
                .await
                .unwrap();
            assert_eq!(status, 200, "{query}: {body}");
            assert_eq!(body["stream"], "account-a1");
            let events = body["events"].as_array().unwrap().clone();
            (versions(&events), body["next_after_version"].as_u64())
        }
    };
    // No query: everything (the default limit is larger than this stream).
    assert_eq!(page("").await, (vec![1, 2, 3, 4, 5], None));
    assert_eq!(page("?limit=2").await, (vec![1, 2], Some(2)));
    assert_eq!(
        page("?after_version=2&limit=2").await,
        (vec![3, 4], Some(4))
    );
    assert_eq!(page("?after_version=4&limit=2").await, (vec![5], None));
    assert_eq!(
        page("?after_version=1&limit=10").await,
        (vec![2, 3, 4, 5], None)
    );
    // Past the end of a stream that exists: an empty page, not a 404.
    assert_eq!(page("?after_version=5").await, (vec![], None));
    assert_eq!(page("?after_version=99").await, (vec![], None));

    // The events carry the stream's data, in order.
    let events = host.read_stream("account-a1").await.unwrap();
    assert_eq!(events[0]["type"], "AccountOpened");
    assert_eq!(balance(&events), 10);
    assert!(positions(&events).is_sorted());

    let (status, body) = host.get("/streams/account-nobody").await.unwrap();
    crate::common::assert_error(status, &body, 404, "unknown_stream");
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=abc",
        "?after_version=abc",
        "?after_version=-1",
        "?unknown=1",
    ] {
        let (status, body) = host
            .get(&format!("/streams/account-a1{bad}"))
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        crate::common::assert_error(status, &body, 400, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reading_the_log_pages_by_position() {
    let host = bank_host().await;
    // An empty log.
    let (status, body) = host.get("/events").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"events": [], "next_after": 0, "head": 0}));

    // Two streams, interleaved: the log has them in commit order.
    open(&host, "a1").await;
    open(&host, "b1").await;
    deposit(&host, "a1", 1).await.ok();
    deposit(&host, "b1", 2).await.ok();
    let last = deposit(&host, "a1", 3).await.ok()["position"]
        .as_u64()
        .unwrap();
    assert_eq!(last, 5, "positions start at 1 and have no gaps");

    let page = |query: &'static str| {
        let host = &host;
        async move {
            let (status, body) = host.get(&format!("/events{query}")).await.unwrap();
            assert_eq!(status, 200, "{query}: {body}");
            let events = body["events"].as_array().unwrap().clone();
            (
                positions(&events),
                body["next_after"].as_u64().unwrap(),
                body["head"].as_u64().unwrap(),
            )
        }
    };
    assert_eq!(page("").await, (vec![1, 2, 3, 4, 5], 5, 5));
    assert_eq!(page("?limit=2").await, (vec![1, 2], 2, 5));
    assert_eq!(page("?after=2&limit=2").await, (vec![3, 4], 4, 5));
    assert_eq!(page("?after=4&limit=2").await, (vec![5], 5, 5));
    // At the head: an empty page whose next_after is where the reader already is.
    assert_eq!(page("?after=5").await, (vec![], 5, 5));

    let log = host.read_log().await.unwrap();
    let streams: Vec<&str> = log.iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert_eq!(
        streams,
        [
            "account-a1",
            "account-b1",
            "account-a1",
            "account-b1",
            "account-a1"
        ]
    );

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?after=abc",
        "?after=-1",
        "?from=1",
    ] {
        let (status, body) = host.get(&format!("/events{bad}")).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        crate::common::assert_error(status, &body, 400, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_reports_ok_and_the_head() {
    let host = bank_host().await;
    let (status, body) = host.get("/health").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "head": 0}));

    open(&host, "a1").await;
    let position = deposit(&host, "a1", 1).await.ok()["position"].clone();
    let (status, body) = host.get("/health").await.unwrap();
    assert_eq!(status, 200);
    // The head is published before the command is acknowledged.
    assert_eq!(body, json!({"status": "ok", "head": position}));
}

// --- Concurrency ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deposits_to_one_account_all_land_without_gaps() {
    const CLIENTS: usize = 8;
    const DEPOSITS: usize = 25;
    const TOTAL: u64 = (CLIENTS * DEPOSITS) as u64;
    let host = bank_host().await;
    open(&host, "shared").await;

    // No If-Match: the host must serialise or retry, never refuse or lose a deposit.
    let mut tasks = JoinSet::new();
    spawn_depositors(&mut tasks, &host.url, "shared", CLIENTS, DEPOSITS);
    let replies = join_all(tasks).await;

    assert_eq!(replies.len(), CLIENTS * DEPOSITS);
    for reply in &replies {
        reply.ok();
    }
    // Each deposit got a version of its own.
    let acknowledged: BTreeSet<u64> = replies
        .iter()
        .map(|r| r.body["version"].as_u64().unwrap())
        .collect();
    assert_eq!(acknowledged, (2..=TOTAL + 1).collect());

    let events = host.read_stream("account-shared").await.unwrap();
    assert_gap_free(&events, TOTAL + 1);
    assert_eq!(balance(&events), i128::from(TOTAL));
    // The plugin's own fold agrees: the whole balance, and not a unit more, can leave.
    withdraw(&host, "shared", TOTAL + 1)
        .await
        .assert_refused("insufficient_funds");
    assert_eq!(
        withdraw(&host, "shared", TOTAL).await.ok()["version"],
        TOTAL + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_on_one_store_retry_instead_of_losing_deposits() {
    const CLIENTS_PER_HOST: usize = 4;
    const DEPOSITS: usize = 25;
    const TOTAL: u64 = (2 * CLIENTS_PER_HOST * DEPOSITS) as u64;
    let first = bank_host().await;
    let second = TestHost::start_sharing(&first).await.unwrap();
    open(&first, "shared").await;

    // Each host serialises its own writers per stream, but nothing serialises the two
    // hosts: their appends race in the store, and the loser must decide again on the
    // winner's events instead of failing or overwriting.
    let mut tasks = JoinSet::new();
    spawn_depositors(&mut tasks, &first.url, "shared", CLIENTS_PER_HOST, DEPOSITS);
    spawn_depositors(
        &mut tasks,
        &second.url,
        "shared",
        CLIENTS_PER_HOST,
        DEPOSITS,
    );
    let replies = join_all(tasks).await;

    for reply in &replies {
        reply.ok();
    }
    let acknowledged: BTreeSet<u64> = replies
        .iter()
        .map(|r| r.body["version"].as_u64().unwrap())
        .collect();
    assert_eq!(acknowledged, (2..=TOTAL + 1).collect());

    // Both hosts read the same, gap-free stream.
    let events = first.read_stream("account-shared").await.unwrap();
    assert_gap_free(&events, TOTAL + 1);
    assert_eq!(balance(&events), i128::from(TOTAL));
    assert_eq!(second.read_stream("account-shared").await.unwrap(), events);
    assert_eq!(
        first.read_log().await.unwrap(),
        second.read_log().await.unwrap()
    );

    // Each host's cached state must have caught up with the other's writes: the first
    // can withdraw everything, and the second then sees an empty account.
    assert_eq!(
        withdraw(&first, "shared", TOTAL).await.ok()["version"],
        TOTAL + 2
    );
    withdraw(&second, "shared", 1)
        .await
        .assert_refused("insufficient_funds");
    assert_eq!(
        deposit(&second, "shared", 1).await.ok()["version"],
        TOTAL + 3
    );
}

// --- Idempotency ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_idempotency_key_replays_the_first_result() {
    let host = bank_host().await;
    open(&host, "a1").await;
    let body = command("a1", json!({"amount": 5}));
    let key = [("idempotency-key", "deposit-5")];

    let first = host.send("deposit", &body, &key).await.unwrap();
    first.ok();
    assert_eq!(first.header("idempotent-replayed"), None);

    let again = host.send("deposit", &body, &key).await.unwrap();
    assert_eq!(
        again.ok(),
        first.ok(),
        "the same body: position, events and all"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(
        again.header("tessera-position"),
        first.header("tessera-position")
    );
    assert_eq!(log_length(&host).await, 2, "the opening and one deposit");

    // The same JSON formatted differently is the same command.
    let reformatted = host
        .post_raw(
            "/commands/deposit",
            Some("application/json"),
            r#"{ "payload" : { "amount" : 5 } , "aggregate_id" : "a1" }"#,
        )
        .await;
    // (Sent without the key: it is a new deposit.)
    assert_eq!(reformatted.unwrap().ok()["version"], 3);
    let replayed = Reply::read(
        host.client
            .post(format!("{}/commands/deposit", host.url))
            .header("content-type", "application/json")
            .header("idempotency-key", "deposit-5")
            .body(r#"{ "payload" : { "amount" : 5 } , "aggregate_id" : "a1" }"#)
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(replayed.ok(), first.ok());
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));

    // Metadata is not part of what the key identifies: a retry may carry new ids.
    let with_metadata = json!({
        "aggregate_id": "a1",
        "payload": {"amount": 5},
        "metadata": {"correlation_id": "retry"},
    });
    let replayed = host.send("deposit", &with_metadata, &key).await.unwrap();
    assert_eq!(replayed.ok(), first.ok());

    // A key is replayed even when the command would now be refused.
    let withdraw_all = command("a1", json!({"amount": 10}));
    let emptied = host
        .send(
            "withdraw",
            &withdraw_all,
            &[("idempotency-key", "withdraw-10")],
        )
        .await
        .unwrap();
    emptied.ok();
    let replayed = host
        .send(
            "withdraw",
            &withdraw_all,
            &[("idempotency-key", "withdraw-10")],
        )
        .await
        .unwrap();
    assert_eq!(replayed.ok(), emptied.ok());

    let events = host.read_stream("account-a1").await.unwrap();
    assert_gap_free(&events, 4);
    assert_eq!(balance(&events), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_reused_for_another_command_is_422_idempotency_mismatch() {
    let host = bank_host().await;
    open(&host, "a1").await;
    open(&host, "b1").await;
    let key = [("idempotency-key", "k1")];
    host.send("deposit", &command("a1", json!({"amount": 5})), &key)
        .await
        .unwrap()
        .ok();

    let reuses = [
        (
            "another payload",
            "deposit",
            command("a1", json!({"amount": 6})),
        ),
        (
            "another aggregate",
            "deposit",
            command("b1", json!({"amount": 5})),
        ),
        (
            "another command",
            "withdraw",
            command("a1", json!({"amount": 5})),
        ),
    ];
    for (why, name, body) in reuses {
        let reply = host.send(name, &body, &key).await.unwrap();
        assert_eq!(reply.status, 422, "{why}: {}", reply.body);
        reply.assert_error(422, "idempotency_mismatch");
    }
    assert_eq!(log_length(&host).await, 3, "two openings and one deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_append_once() {
    const REQUESTS: usize = 10;
    let host = bank_host().await;
    open(&host, "a1").await;

    // All requests start together, so that several are past the host's first look
    // for the key before the first one has committed.
    let replies = burst(
        &host,
        "deposit",
        command("a1", json!({"amount": 7})),
        &[("idempotency-key", "burst")],
        REQUESTS,
    )
    .await;
    assert_eq!(replies.len(), REQUESTS);

    let first = replies[0].ok();
    for reply in &replies {
        assert_eq!(reply.ok(), first, "every request gets the one result");
    }
    let fresh = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request appended, the rest replayed");
    let events = host.read_stream("account-a1").await.unwrap();
    assert_gap_free(&events, 2);
    assert_eq!(balance(&events), 7);
    assert_eq!(log_length(&host).await, 2);
}

// --- Restart ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_host_keeps_streams_and_idempotency_keys() {
    let host = bank_host().await;
    open(&host, "a1").await;
    open(&host, "b1").await;
    let keyed_deposit = command("a1", json!({"amount": 9}));
    let key = [("idempotency-key", "before-restart")];
    let first = host.send("deposit", &keyed_deposit, &key).await.unwrap();
    first.ok();
    deposit(&host, "b1", 4).await.ok();
    withdraw(&host, "a1", 2).await.ok();
    let log_before = host.read_log().await.unwrap();
    let a1_before = host.read_stream("account-a1").await.unwrap();
    let b1_before = host.read_stream("account-b1").await.unwrap();

    let host = host.restart().await.unwrap();

    // Everything is still there, byte for byte.
    assert_eq!(host.read_log().await.unwrap(), log_before);
    assert_eq!(host.read_stream("account-a1").await.unwrap(), a1_before);
    assert_eq!(host.read_stream("account-b1").await.unwrap(), b1_before);
    let (_, health) = host.get("/health").await.unwrap();
    assert_eq!(health["head"], log_before.len());

    // The key survived: the retry replays the stored result and appends nothing.
    let again = host.send("deposit", &keyed_deposit, &key).await.unwrap();
    assert_eq!(again.ok(), first.ok());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let reused = host
        .send("deposit", &command("a1", json!({"amount": 1})), &key)
        .await
        .unwrap();
    reused.assert_error(422, "idempotency_mismatch");
    assert_eq!(host.read_log().await.unwrap(), log_before);

    // The state is rebuilt from the store: 9 - 2 = 7 in a1, 4 in b1.
    withdraw(&host, "a1", 8)
        .await
        .assert_refused("insufficient_funds");
    assert_eq!(withdraw(&host, "a1", 7).await.ok()["version"], 4);
    assert_eq!(withdraw(&host, "b1", 4).await.ok()["version"], 3);
    send(&host, "open-account", "a1", json!({"owner": "ada"}))
        .await
        .assert_refused("account_already_open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_ignores_how_the_payload_json_is_written() {
    // The trap plugin's `ping` accepts any fields, so its payload can have several keys.
    let host = TestHost::start(&[plugins::TEST_TRAP]).await.unwrap();
    let ping = |body: &'static str| {
        let host = &host;
        async move {
            Reply::read(
                host.client
                    .post(format!("{}/commands/ping", host.url))
                    .header("content-type", "application/json")
                    .header("idempotency-key", "ping-1")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let first = ping(r#"{"aggregate_id": "f1", "payload": {"b": 1, "a": [2, 3]}}"#).await;
    first.ok();
    // Other key order, other whitespace, the body's fields swapped: the same command.
    let again = ping(r#"{"payload":{ "a":[2,3] ,"b":1 },"aggregate_id":"f1"}"#).await;
    assert_eq!(again.ok(), first.ok());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // A different value is a different command.
    ping(r#"{"aggregate_id": "f1", "payload": {"b": 1, "a": [3, 2]}}"#)
        .await
        .assert_error(422, "idempotency_mismatch");
    assert_eq!(log_length(&host).await, 1);
}

// --- Known host bugs --------------------------------------------------------------
//
// These tests state what the host promises and fail against the current host code.
// They are ignored so that the suite stays green until the host is fixed; run them with
// `cargo test -p tessera --test e2e commands_http:: -- --ignored`.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_in_flight_are_replayed_even_when_deciding_again_would_refuse() {
    let host = bank_host().await;
    // A client that retries an `open-account` whose first attempt is still in flight must
    // get the first result, not "account_already_open" from a second decision.
    let replies = burst(
        &host,
        "open-account",
        command("a1", json!({"owner": "ada"})),
        &[("idempotency-key", "open-a1")],
        10,
    )
    .await;
    let first = replies[0].body.clone();
    for reply in &replies {
        assert_eq!(reply.ok(), &first);
    }
    assert_eq!(log_length(&host).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_in_flight_with_if_match_are_replayed_not_conflicts() {
    let host = bank_host().await;
    open(&host, "a1").await;
    let replies = burst(
        &host,
        "deposit",
        command("a1", json!({"amount": 1})),
        &[("idempotency-key", "dep-1"), ("if-match", "\"1\"")],
        10,
    )
    .await;
    let first = replies[0].body.clone();
    for reply in &replies {
        assert_eq!(reply.ok(), &first);
    }
    assert_eq!(log_length(&host).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursors_past_the_end_never_read_from_the_start() {
    let host = bank_host().await;
    open(&host, "a1").await;
    deposit(&host, "a1", 1).await.ok();
    // A cursor far past the end reads nothing (or is refused): it must never go back.
    for path in [
        "/streams/account-a1?after_version=9223372036854775808",
        "/streams/account-a1?after_version=18446744073709551615",
        "/events?after=9223372036854775808",
        "/events?after=18446744073709551615",
    ] {
        let (status, body) = host.get(path).await.unwrap();
        if status == 400 {
            crate::common::assert_error(status, &body, 400, "bad_request");
        } else {
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(
                body["events"],
                json!([]),
                "{path} read from the start: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_host_on_a_shared_store_reports_the_shared_head() {
    let first = bank_host().await;
    let second = TestHost::start_sharing(&first).await.unwrap();
    open(&first, "a1").await;
    let head = deposit(&first, "a1", 1).await.ok()["position"].clone();
    // The second host learns of the first host's commits by watching the shared
    // file (a short poll), so it reports the shared head soon, not at once.
    let mut health = serde_json::Value::Null;
    for _ in 0..200 {
        health = second.get("/health").await.unwrap().1;
        if health["head"] == head {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(health["head"], head, "{health}");
    // A page of the first event, read through the second host, reports that head.
    let (status, page) = second.get("/events?limit=1").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["next_after"], 1);
    assert_eq!(page["head"], head, "{page}");
}

/// Assertions on refusals, chained on a reply.
trait Refused {
    /// Asserts a 422 `rejected` with this rule code.
    fn assert_refused(&self, reason: &str);
}

impl Refused for Reply {
    #[track_caller]
    fn assert_refused(&self, reason: &str) {
        self.assert_error(422, "rejected");
        assert_eq!(
            self.body["error"]["details"]["reason"], reason,
            "{}",
            self.body
        );
    }
}

// --- Snapshots ---------------------------------------------------------------------

/// The snapshots stored for `stream`: (digest, version, state).
fn snapshots(host: &TestHost, stream: &str) -> Vec<(String, u64, String)> {
    let conn = rusqlite::Connection::open(host.data_dir().join("events.db")).expect("open log");
    let mut statement = conn
        .prepare("SELECT digest, version, state FROM snapshots WHERE stream = ?1")
        .expect("snapshots table");
    statement
        .query_map([stream], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })
        .expect("query")
        .map(|row| row.expect("row"))
        .collect()
}

/// Runs one statement on the stopped host's log.
fn write_log(host: &TestHost, sql: &str, params: &[&dyn rusqlite::ToSql]) {
    let conn = rusqlite::Connection::open(host.data_dir().join("events.db")).expect("open log");
    conn.execute(sql, params).expect("statement");
}

/// Opens `id` and deposits 1 `deposits` times; returns the last reply's version.
async fn long_account(host: &TestHost, id: &str, deposits: u64) -> u64 {
    open(host, id).await;
    let mut version = 1;
    for _ in 0..deposits {
        version = deposit(host, id, 1).await.ok()["version"]
            .as_u64()
            .expect("version");
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_snapshotted_and_a_restart_starts_from_the_snapshot() {
    let host = bank_host().await;
    let version = long_account(&host, "snap", 250).await;
    assert_eq!(version, 251);
    // The host keeps a snapshot every 50 events folded (they ride along with the
    // next commit, or are written when the writer is idle, and at the latest when
    // the store closes).
    let mut host = host;
    host.shutdown().await;
    let stored = snapshots(&host, "account-snap");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (digest, at, state) = stored[0].clone();
    assert!((201..=251).contains(&at), "snapshot at version {at}");
    let state: Value = serde_json::from_str(&state).expect("a snapshot is JSON");
    assert_eq!(state["balance"], json!(at - 1));

    // The snapshot is read after a restart: a forged one by the same code changes
    // the state the handler decides on (a snapshot is trusted as its code wrote it),
    // which shows the fold starts from it rather than from the first event.
    write_log(
        &host,
        "UPDATE snapshots SET state = ?1 WHERE stream = 'account-snap' AND digest = ?2",
        &[
            &json!({"owner": "ada", "balance": 1_000_000}).to_string(),
            &digest,
        ],
    );
    let host = host.restart().await.unwrap();
    withdraw(&host, "snap", 900_000).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_other_code_are_never_read_and_deleting_them_changes_no_answer() {
    let mut host = bank_host().await;
    long_account(&host, "cache", 150).await;
    host.shutdown().await;
    let (digest, ..) = snapshots(&host, "account-cache").remove(0);
    // A snapshot by other code (another digest), newer and wrong: never read.
    write_log(
        &host,
        "INSERT INTO snapshots (stream, digest, version, state) VALUES ('account-cache', ?1, 151, '{\"bogus\": true}')",
        &[&"0".repeat(64)],
    );
    let host = host.restart().await.unwrap();
    // 150 deposited: 150 can go out, 151 cannot.
    withdraw(&host, "cache", 151)
        .await
        .assert_error(422, "rejected");
    let events = host.read_stream("account-cache").await.unwrap();
    let answer = withdraw(&host, "cache", 150).await;
    assert_eq!(answer.ok()["version"], json!(events.len() + 1));

    // Deleting every snapshot changes no answer: the fold from the start gives the
    // same state.
    let mut host = host;
    host.shutdown().await;
    assert!(
        snapshots(&host, "account-cache")
            .iter()
            .any(|s| s.0 == digest)
    );
    write_log(&host, "DELETE FROM snapshots", &[]);
    let host = host.restart().await.unwrap();
    withdraw(&host, "cache", 1)
        .await
        .assert_error(422, "rejected");
    deposit(&host, "cache", 5).await.ok();
    withdraw(&host, "cache", 5).await.ok();
}
