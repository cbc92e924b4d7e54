//! Bad input over HTTP: every malformed request gets a 4xx with the JSON error body
//! (`{"error": {"code", "message"}, "request_id"}`), never a 5xx, a bare text body or
//! a dropped connection. One test per class of bad input, then a seeded fuzz loop of
//! random paths, methods, headers and bodies.

use std::time::Duration;

use crate::common::{Reply, TestHost, is_error_body, plugins};
use reqwest::Method;
use serde_json::json;

/// The largest body the host accepts (`tessera::http::MAX_BODY`).
const MAX_BODY: usize = 1 << 20;
/// The deepest payload nesting accepted (`MAX_PAYLOAD_DEPTH` in `http/commands.rs`).
const MAX_DEPTH: usize = 64;
/// The admin token of the fuzzed host: the fuzz never sends it, so it cannot deploy,
/// remove or reconfigure anything.
const ADMIN_TOKEN: &str = "fuzz-admin-secret";

// --- Helpers ---------------------------------------------------------------------

/// A host serving the whole bank, with an open account `a1` holding 10, and its
/// projections live.
async fn bank_host() -> TestHost {
    let host = TestHost::start_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ],
        |config| config.admin_token = Some(ADMIN_TOKEN.to_string()),
    )
    .await
    .expect("host starts")
    .with_request_timeout(Duration::from_secs(60));
    host.command("open-account", "a1", json!({"owner": "ada"}))
        .await
        .expect("open");
    host.command("deposit", "a1", json!({"amount": 10}))
        .await
        .expect("deposit");
    host.wait_live(&["account-balance", "bank-totals"])
        .await
        .expect("projections live");
    host
}

/// Sends `method path` with optional headers and body.
async fn send(
    host: &TestHost,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let mut request = host.client.request(method, format!("{}{path}", host.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    Reply::read(request.send().await.expect("a response"))
        .await
        .expect("a body")
}

/// Posts raw bytes as JSON to `path`.
async fn post_json(host: &TestHost, path: &str, body: impl Into<Vec<u8>>) -> Reply {
    send(
        host,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        Some(body.into()),
    )
    .await
}

/// Posts a deposit of 1 into `a1` with extra headers.
async fn deposit_with(host: &TestHost, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = json!({"aggregate_id": "a1", "payload": {"amount": 1}});
    send(
        host,
        Method::POST,
        "/commands/deposit",
        &all,
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Asserts the host still serves: `GET /health` and a deposit.
async fn assert_still_serving(host: &TestHost) {
    let (status, body) = host.get("/health").await.expect("health");
    assert_eq!(status, 200, "{body}");
    deposit_with(host, &[]).await.ok();
}

// --- Bodies --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_over_one_mebibyte_is_413() {
    let host = bank_host().await;
    // A valid command whose payload makes it one byte too many.
    let padding = "x".repeat(MAX_BODY);
    let too_big =
        json!({"aggregate_id": "a1", "payload": {"amount": 1, "note": padding}}).to_string();
    assert!(too_big.len() > MAX_BODY);
    for path in ["/commands/deposit", "/queries/account"] {
        post_json(&host, path, too_big.clone())
            .await
            .assert_error(413, "payload_too_large");
    }
    // Far over: 8 MiB of anything.
    post_json(&host, "/commands/deposit", vec![b' '; 8 * MAX_BODY])
        .await
        .assert_error(413, "payload_too_large");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_body_over_one_mebibyte_is_413() {
    let host = bank_host().await;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let body = format!(r#"{{"max_attempts": 3, "x": "{}"}}"#, "y".repeat(MAX_BODY));
    let reply = send(
        &host,
        Method::PUT,
        "/projections/account-balance/policy",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(body.into_bytes()),
    )
    .await;
    reply.assert_error(413, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_is_not_declared_json_is_415() {
    let host = bank_host().await;
    let body = json!({"aggregate_id": "a1", "payload": {"amount": 1}})
        .to_string()
        .into_bytes();
    for content_type in [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("jsonish"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|value| vec![("content-type", value)])
            .unwrap_or_default();
        for path in ["/commands/deposit", "/queries/account"] {
            send(&host, Method::POST, path, &headers, Some(body.clone()))
                .await
                .assert_error(415, "unsupported_media_type");
        }
    }
    // JSON with parameters, or a +json type, is JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let reply = send(
            &host,
            Method::POST,
            "/commands/deposit",
            &[("content-type", content_type)],
            Some(body.clone()),
        )
        .await;
        reply.ok();
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_json_is_400() {
    let host = bank_host().await;
    let bodies: [&[u8]; 10] = [
        b"",
        b"{",
        b"nul",
        b"{\"aggregate_id\": \"a1\", \"payload\": {\"amount\": 1}",
        b"{\"aggregate_id\": \"a1\", \"payload\": {\"amount\": 1}} trailing",
        b"{'aggregate_id': 'a1'}",
        b"{\"aggregate_id\": \"a1\", \"payload\": {\"amount\": 01}}",
        b"{\"aggregate_id\": \"a\xff\xfe\", \"payload\": {}}",
        b"{\"aggregate_id\": \"\\ud800\", \"payload\": {}}",
        b"\xef\xbb\xbf{\"aggregate_id\": \"a1\", \"payload\": {}}",
    ];
    for body in bodies {
        let reply = post_json(&host, "/commands/deposit", body.to_vec()).await;
        assert_eq!(
            reply.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            reply.body
        );
        reply.assert_error(400, "bad_request");
    }
    for body in [&b"{"[..], b"[1, 2", b"not json"] {
        post_json(&host, "/queries/account", body.to_vec())
            .await
            .assert_error(400, "bad_request");
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_shapes_are_400() {
    let host = bank_host().await;
    let shapes = [
        json!([]),
        json!([{"aggregate_id": "a1", "payload": {"amount": 1}}]),
        json!("a1"),
        json!(42),
        json!(null),
        json!({}),
        json!({"aggregate_id": "a1"}),
        json!({"payload": {"amount": 1}}),
        json!({"aggregate_id": 1, "payload": {"amount": 1}}),
        json!({"aggregate_id": null, "payload": {"amount": 1}}),
        json!({"aggregate_id": ["a1"], "payload": {"amount": 1}}),
        json!({"aggregate_id": {"id": "a1"}, "payload": {"amount": 1}}),
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "metadata": "m"}),
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "metadata": {"correlation_id": 7}}),
        json!({"aggregate_id": "", "payload": {"amount": 1}}),
        json!({"aggregate_id": "a\u{0}1", "payload": {"amount": 1}}),
        json!({"aggregate_id": "x".repeat(257), "payload": {"amount": 1}}),
    ];
    for shape in shapes {
        let reply = post_json(&host, "/commands/deposit", shape.to_string()).await;
        assert_eq!(reply.status, 400, "{shape}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // A query's POST body must be an object of parameters.
    for shape in [json!([]), json!("id"), json!(1), json!(null)] {
        post_json(&host, "/queries/account", shape.to_string())
            .await
            .assert_error(400, "bad_request");
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payload_that_is_not_an_object_is_400() {
    let host = bank_host().await;
    for payload in [
        json!("amount"),
        json!([1]),
        json!(5),
        json!(null),
        json!(true),
    ] {
        let body = json!({"aggregate_id": "a1", "payload": payload});
        let reply = post_json(&host, "/commands/deposit", body.to_string()).await;
        assert_eq!(reply.status, 400, "{payload}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payload_nested_deeper_than_64_is_400() {
    let host = bank_host().await;
    let at = |depth: usize| {
        format!(
            r#"{{"aggregate_id": "a1", "payload": {{"amount": 1, "deep": {}}}}}"#,
            nested(depth)
        )
    };
    // The payload object itself is one level: 63 arrays inside it make 64.
    let reply = post_json(&host, "/commands/deposit", at(MAX_DEPTH - 1)).await;
    assert_ne!(reply.status, 400, "64 levels are allowed: {}", reply.body);
    assert!(is_error_body(&reply.body), "{}", reply.body);
    assert_eq!(
        reply.status, 422,
        "the handler refuses `deep`: {}",
        reply.body
    );

    for depth in [MAX_DEPTH, MAX_DEPTH + 1, 200, 100_000] {
        let reply = post_json(&host, "/commands/deposit", at(depth)).await;
        assert_eq!(reply.status, 400, "depth {depth}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // Brackets inside strings are text, not nesting.
    let text = format!(
        r#"{{"aggregate_id": "a1", "payload": {{"amount": 1, "note": "{}"}}}}"#,
        "[".repeat(1000)
    );
    let reply = post_json(&host, "/commands/deposit", text).await;
    assert_eq!(reply.status, 422, "{}", reply.body);

    // A query's parameters nested past anything reasonable are refused as well.
    let deep_params = format!(r#"{{"id": {}}}"#, nested(100_000));
    post_json(&host, "/queries/account", deep_params)
        .await
        .assert_error(400, "bad_request");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_fields_are_400() {
    let host = bank_host().await;
    for body in [
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "extra": true}),
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "Aggregate_Id": "a2"}),
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "metadata": {"trace": "t"}}),
        json!({"aggregate_id": "a1", "payload": {"amount": 1}, "metadata": {"command_id": "c"}}),
    ] {
        let reply = post_json(&host, "/commands/deposit", body.to_string()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    assert_still_serving(&host).await;
}

// --- Headers -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_headers_are_400() {
    let host = bank_host().await;
    let long_key = "k".repeat(256);
    let commands: [(&str, &str); 12] = [
        ("if-match", "abc"),
        ("if-match", "-1"),
        ("if-match", "\"1"),
        ("if-match", "W/\"1\""),
        ("if-match", "1.5"),
        ("if-match", "99999999999999999999999"),
        // The description's pattern: 1 to 19 digits, bare or quoted, nothing else.
        ("if-match", "+3"),
        ("if-match", "00000000000000000001"),
        ("if-match", "\"\""),
        ("idempotency-key", ""),
        ("idempotency-key", &long_key),
        ("tessera-principal", "caf\u{e9}"),
    ];
    for (name, value) in commands {
        let reply = send_raw_header(&host, "/commands/deposit", name, value).await;
        assert_eq!(reply.status, 400, "{name}: {value:?}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // The longest key and a quoted or bare version are fine.
    deposit_with(&host, &[("idempotency-key", &"k".repeat(255))])
        .await
        .ok();

    for (name, value) in [
        ("tessera-min-position", "abc"),
        ("tessera-min-position", "-1"),
        ("tessera-min-position", "1e3"),
        ("tessera-min-position", ""),
        ("tessera-max-wait", "soon"),
        ("tessera-max-wait", "-5"),
    ] {
        let reply = send(
            &host,
            Method::GET,
            "/queries/account?id=a1",
            &[(name, value)],
            None,
        )
        .await;
        assert_eq!(reply.status, 400, "{name}: {value:?}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    assert_still_serving(&host).await;
}

/// Sends a deposit with one header whose value may hold any bytes (as opaque bytes,
/// so that non-ASCII values reach the host as they are).
async fn send_raw_header(host: &TestHost, path: &str, name: &str, value: &str) -> Reply {
    let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).expect("header");
    let body = json!({"aggregate_id": "a1", "payload": {"amount": 1}});
    let response = host
        .client
        .post(format!("{}{path}", host.url))
        .header("content-type", "application/json")
        .header(name, value)
        .body(body.to_string())
        .send()
        .await
        .expect("a response");
    Reply::read(response).await.expect("a body")
}

/// If-Match is 1 to 19 digits, bare or in quotes (the description's pattern): such a
/// version is compared (409 when it is not the stream's), never refused as malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_takes_up_to_19_digits_bare_or_quoted() {
    let host = bank_host().await;
    for value in ["9999999999999999999", "\"0000000000000000001\"", "7"] {
        let reply = deposit_with(&host, &[("if-match", value)]).await;
        reply.assert_error(409, "conflict");
    }
    let reply = deposit_with(&host, &[("if-match", "\"2\"")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// `max_attempts` is a whole number as JSON Schema's `integer` reads it: `5.0` is 5,
/// `5.5` and 0 are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_attempts_is_a_whole_number_however_written() {
    let host = bank_host().await;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let put = async |body: &str| {
        send(
            &host,
            Method::PUT,
            "/projections/bank-totals/policy",
            &[
                ("authorization", &admin),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes().to_vec()),
        )
        .await
    };
    let reply = put(r#"{"max_attempts": 7.0}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["max_attempts"], 7);
    for body in [
        r#"{"max_attempts": 5.5}"#,
        r#"{"max_attempts": 0}"#,
        r#"{"max_attempts": -1}"#,
        r#"{"max_attempts": 4294967296}"#,
        r#"{"max_attempts": "5"}"#,
    ] {
        put(body).await.assert_error(400, "bad_request");
    }
}

/// Spaces and tabs around the event types of a stream's filter are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spaces_around_event_types_are_ignored() {
    let host = bank_host().await;
    let response = host
        .client
        .get(format!(
            "{}/events/stream?after=0&event_type=%20Deposited%09,%20Withdrawn",
            host.url
        ))
        .send()
        .await
        .expect("a response");
    // The stream does not end; its status and first event are enough.
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = response.chunk().await.expect("a chunk").expect("more");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"type\":\"Deposited\""), "{text}");
}

// --- Query strings and paths ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_query_strings_are_400() {
    let host = bank_host().await;
    for path in [
        "/events?limit=abc",
        "/events?after=-1",
        "/events?after=abc",
        "/events?limit=0",
        "/events?limit=1001",
        "/events?limit=-3",
        "/events?after=1&after=2",
        "/events?unknown=1",
        "/events?after=99999999999999999999999",
        "/streams/account-a1?after_version=abc",
        "/streams/account-a1?after_version=-1",
        "/streams/account-a1?limit=0",
        "/streams/account-a1?page=2",
        "/streams/%FF%FE",
        // Only spaces and tabs around an event type are ignored (the description's
        // pattern); other whitespace makes it no event type.
        "/events/stream?event_type=%C2%A0Deposited",
        "/events/stream?event_type=Deposited%0A",
    ] {
        let reply = send(&host, Method::GET, path, &[], None).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    // Admin routes parse their parameters the same way (the token gets through).
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for (method, path) in [
        (
            Method::POST,
            "/projections/account-balance/promote?version=abc",
        ),
        (Method::DELETE, "/projections/account-balance/versions/abc"),
        (Method::DELETE, "/projections/account-balance/parked/-1"),
        (Method::POST, "/projections/account-balance/parked/x/retry"),
    ] {
        let reply = send(&host, method, path, &[("authorization", &admin)], None).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        reply.assert_error(400, "bad_request");
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_routes_are_404_json() {
    let host = bank_host().await;
    let long = format!("/{}", "a".repeat(10_000));
    for (method, path) in [
        // (`GET /` is the dashboard.)
        (Method::GET, "/ui/nope.js"),
        (Method::GET, "/nope"),
        (Method::GET, "/commands"),
        (Method::POST, "/commands"),
        (Method::POST, "/commands/deposit/extra"),
        (Method::GET, "/events/1"),
        (Method::GET, "/queries/account/extra"),
        (Method::GET, "/projections/a/b/c/d/e"),
        (Method::GET, "/plugins/bank-account/versions"),
        (Method::GET, "/%2e%2e/%2e%2e/etc/passwd"),
        (Method::DELETE, "/nope"),
        (Method::GET, &long),
    ] {
        let reply = send(&host, method.clone(), path, &[], None).await;
        assert_eq!(
            reply.status,
            404,
            "{method} {}: {}",
            &path[..path.len().min(60)],
            reply.body
        );
        reply.assert_error(404, "not_found");
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_methods_are_405_json() {
    let host = bank_host().await;
    for (method, path) in [
        (Method::GET, "/commands/deposit"),
        (Method::PUT, "/commands/deposit"),
        (Method::DELETE, "/events"),
        (Method::POST, "/events"),
        (Method::PUT, "/health"),
        (Method::POST, "/plugins"),
        (Method::PATCH, "/queries/account"),
        (Method::DELETE, "/queries"),
        (Method::POST, "/streams/account-a1"),
        (Method::GET, "/projections/account-balance/promote"),
        (Method::POST, "/openapi.json"),
    ] {
        let reply = send(&host, method.clone(), path, &[], None).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        reply.assert_error(405, "method_not_allowed");
    }
    assert_still_serving(&host).await;
}

// --- Fuzz ----------------------------------------------------------------------------

/// Requests the fuzz loop sends.
const FUZZ_REQUESTS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_requests_never_get_a_5xx_and_every_error_is_json() {
    let host = bank_host().await;
    let mut rng = fastrand::Rng::with_seed(0x7E55_E8A5);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..FUZZ_REQUESTS {
        let request = random_request(&mut rng);
        let described = request.describe();
        let mut builder = host.client.request(
            request.method.clone(),
            format!("{}{}", host.url, request.path),
        );
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.clone());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} got no response: {e:#}\n{described}"));
        let reply = Reply::read(response).await.expect("a body");
        *statuses.entry(reply.status).or_default() += 1;
        assert!(
            reply.status < 500,
            "request {n} got {}: {}\n{described}",
            reply.status,
            reply.body
        );
        if reply.status >= 400 {
            assert!(
                is_error_body(&reply.body),
                "request {n} got {} without the JSON error body: {}\n{described}",
                reply.status,
                reply.body
            );
        }
    }
    // The fuzz reached past the router and the extractors, not only into 404s.
    let accepted: usize = statuses
        .iter()
        .filter(|(status, _)| **status < 300)
        .map(|(_, count)| count)
        .sum();
    assert!(accepted > 0, "no request succeeded: {statuses:?}");
    assert!(statuses.len() >= 5, "too few kinds of answer: {statuses:?}");
    assert_still_serving(&host).await;
}

/// One random request.
struct FuzzRequest {
    method: Method,
    path: String,
    headers: Vec<(String, reqwest::header::HeaderValue)>,
    body: Option<Vec<u8>>,
}

impl FuzzRequest {
    fn describe(&self) -> String {
        let body = self
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned());
        format!(
            "{} {}\nheaders: {:?}\nbody: {body:?}",
            self.method, self.path, self.headers
        )
    }
}

fn random_request(rng: &mut fastrand::Rng) -> FuzzRequest {
    let (route_method, mut path) = random_route(rng);
    // Mostly the route's own method, so that requests reach the extractors and the
    // handlers; sometimes any method.
    let method = if rng.u8(..100) < 80 {
        route_method
    } else {
        rng.choice(&[
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .expect("something to choose from")
        .clone()
    };
    if rng.u8(..100) < 40 {
        path.push('?');
        path.push_str(&random_query(rng));
    }
    let mut headers = Vec::new();
    let header_count = rng.u64(..4);
    for _ in 0..header_count {
        headers.push(random_header(rng));
    }
    let body = (method != Method::GET || rng.u8(..100) < 10).then(|| random_body(rng));
    if body.is_some() && rng.u8(..100) < 80 {
        let content_type = rng
            .choice(&[
                "application/json",
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
                "application/wasm",
                "",
            ])
            .expect("something to choose from");
        headers.push((
            "content-type".to_string(),
            reqwest::header::HeaderValue::from_static(content_type),
        ));
    }
    FuzzRequest {
        method,
        path,
        headers,
        body,
    }
}

/// A route template with its method, the placeholders filled with plausible or
/// random segments.
fn random_route(rng: &mut fastrand::Rng) -> (Method, String) {
    let templates = [
        (Method::POST, "/commands/{command}"),
        (Method::POST, "/commands/{command}"),
        (Method::POST, "/commands/{command}"),
        (Method::POST, "/commands/{command}"),
        (Method::GET, "/queries/{query}"),
        (Method::GET, "/queries/{query}"),
        (Method::POST, "/queries/{query}"),
        (Method::GET, "/queries"),
        (Method::GET, "/streams/{stream}"),
        (Method::GET, "/events"),
        (Method::GET, "/events"),
        (Method::GET, "/health"),
        (Method::GET, "/plugins"),
        (Method::PUT, "/plugins/{any}"),
        (Method::DELETE, "/plugins/{any}"),
        (Method::POST, "/plugins/{any}/rollback"),
        (Method::GET, "/projections"),
        (Method::GET, "/projections/{projection}/policy"),
        (Method::PUT, "/projections/{projection}/policy"),
        (Method::GET, "/projections/{projection}/parked"),
        (Method::DELETE, "/projections/{projection}/parked/{number}"),
        (
            Method::POST,
            "/projections/{projection}/parked/{number}/retry",
        ),
        (Method::POST, "/projections/{projection}/promote"),
        (
            Method::DELETE,
            "/projections/{projection}/versions/{number}",
        ),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/{any}"),
        (Method::POST, "/{any}/{any}"),
        (Method::GET, ""),
    ];
    let (method, template) = rng
        .choice(&templates)
        .expect("something to choose from")
        .clone();
    let mut path = template.to_string();
    for (placeholder, choices) in [
        (
            "{command}",
            &["open-account", "deposit", "withdraw", "transfer"][..],
        ),
        ("{query}", &["account", "accounts", "totals", "nope"][..]),
        ("{stream}", &["account-a1", "account-zz", "x"][..]),
        (
            "{projection}",
            &["account-balance", "bank-totals", "nope"][..],
        ),
        (
            "{number}",
            &["1", "0", "-1", "abc", "18446744073709551616"][..],
        ),
    ] {
        while path.contains(placeholder) {
            let segment = if rng.u8(..100) < 75 {
                rng.choice(choices)
                    .expect("something to choose from")
                    .to_string()
            } else {
                random_segment(rng)
            };
            path = path.replacen(placeholder, &segment, 1);
        }
    }
    while path.contains("{any}") {
        let segment = random_segment(rng);
        path = path.replacen("{any}", &segment, 1);
    }
    if path.is_empty() {
        path.push('/');
    }
    (method, path)
}

/// A path segment of random characters, percent-encoded where needed.
fn random_segment(rng: &mut fastrand::Rng) -> String {
    let len = rng.u64(0..=24);
    let alphabet = b"abcxyz-_.~019%/?#[]@!$&'()*+,;= \"<>\\^`{|}";
    let mut segment = String::new();
    for _ in 0..len {
        match rng.u64(..10) {
            0 => segment.push_str(&format!("%{:02X}", rng.u64(..256))),
            1 => segment.push_str("%E2%82%AC"),
            _ => {
                let byte = alphabet[rng.usize(..alphabet.len())];
                match byte {
                    b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        segment.push(byte as char)
                    }
                    other => segment.push_str(&format!("%{other:02X}")),
                }
            }
        }
    }
    segment
}

fn random_query(rng: &mut fastrand::Rng) -> String {
    let keys = [
        "limit",
        "after",
        "after_version",
        "id",
        "cursor",
        "version",
        "x",
    ];
    let values = [
        "1", "0", "-1", "abc", "1000", "1001", "", "a1", "%FF", "1e9",
    ];
    let count = rng.u64(1..=3);
    (0..count)
        .map(|_| {
            format!(
                "{}={}",
                rng.choice(&keys).expect("something to choose from"),
                rng.choice(&values).expect("something to choose from")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn random_header(rng: &mut fastrand::Rng) -> (String, reqwest::header::HeaderValue) {
    let names = [
        "if-match",
        "idempotency-key",
        "tessera-principal",
        "tessera-min-position",
        "tessera-max-wait",
        "authorization",
        "accept",
        "x-random",
    ];
    let name = rng
        .choice(&names)
        .expect("something to choose from")
        .to_string();
    let value: String = match rng.u64(..8) {
        0 => "abc".into(),
        1 => "-1".into(),
        2 => "\"1\"".into(),
        // A position the log has reached: a query with it answers at once.
        3 => "1".into(),
        4 => "k".repeat(rng.u64(200..=300) as usize),
        5 => "Bearer wrong-token".into(),
        6 => String::from_utf8_lossy(&[0xC3, 0xA9]).into_owned(),
        _ => random_segment(rng),
    };
    // Waits stay short, so that no request is slow for lack of data.
    let value = if name == "tessera-max-wait" && value.parse::<u64>().is_ok() {
        "10".to_string()
    } else {
        value
    };
    let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes())
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("x"));
    (name, value)
}

fn random_body(rng: &mut fastrand::Rng) -> Vec<u8> {
    let ids = [json!("a1"), json!("b2"), json!(""), json!(7), json!(null)];
    let payloads = [
        json!({"amount": 1}),
        json!({"amount": 0}),
        json!({"amount": -1}),
        json!({"amount": "1"}),
        json!({"owner": "ada"}),
        json!({"owner": ""}),
        json!({}),
        json!("text"),
        json!([1, 2]),
        json!({"amount": 18446744073709551615u64}),
    ];
    match rng.u64(..9) {
        0..=3 => {
            let mut body = json!({
                "aggregate_id": rng.choice(&ids).expect("something to choose from").clone(),
                "payload": rng.choice(&payloads).expect("something to choose from").clone(),
            });
            if rng.u8(..100) < 20 {
                body["metadata"] = json!({"correlation_id": "c", "causation_id": "d"});
            }
            if rng.u8(..100) < 10 {
                body["surprise"] = json!(true);
            }
            body.to_string().into_bytes()
        }
        4 => json!({"id": "a1", "limit": rng.u64(..5)})
            .to_string()
            .into_bytes(),
        5 => nested(rng.u64(1..=200) as usize).into_bytes(),
        6 => {
            // Random bytes.
            let len = rng.u64(0..=512) as usize;
            (0..len).map(|_| rng.u64(..256) as u8).collect()
        }
        7 => {
            // A valid body cut short.
            let text = json!({"aggregate_id": "a1", "payload": {"amount": 1}}).to_string();
            let cut = rng.usize(..text.len());
            text.as_bytes()[..cut].to_vec()
        }
        _ => json!(
            rng.choice(&payloads)
                .expect("something to choose from")
                .clone()
        )
        .to_string()
        .into_bytes(),
    }
}
