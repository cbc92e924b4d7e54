//! The OpenAPI description at `GET /openapi.json` against the router: every operation
//! it describes is served (a request to it reaches a handler, not the router's
//! fallback), and every route the router serves is described.

use std::collections::BTreeSet;

use crate::common::{Reply, TestHost, plugins};
use reqwest::Method;
use serde_json::{Value, json};

/// Every route of the router (`host/src/http/mod.rs`, `api()`), kept by hand: the
/// description is generated from the same registrations, so this list is what
/// catches a route registered outside them. `GET /openapi.json` itself is served but,
/// as usual, not described.
const ROUTES: [(&str, &str); 25] = [
    ("post", "/commands/{command}"),
    ("get", "/streams/{stream}"),
    ("get", "/events"),
    ("get", "/events/stream"),
    ("get", "/queries"),
    ("get", "/queries/{name}"),
    ("post", "/queries/{name}"),
    ("get", "/projections"),
    ("get", "/projections/{name}/policy"),
    ("put", "/projections/{name}/policy"),
    ("get", "/projections/{name}/parked"),
    ("post", "/projections/{name}/parked/{position}/retry"),
    ("delete", "/projections/{name}/parked/{position}"),
    ("post", "/projections/{name}/promote"),
    ("post", "/projections/{name}/rollback"),
    ("post", "/projections/{name}/rebuild"),
    ("post", "/projections/{name}/resume"),
    ("delete", "/projections/{name}/versions/{version}"),
    ("get", "/plugins"),
    ("put", "/plugins/{name}"),
    ("delete", "/plugins/{name}"),
    ("post", "/plugins/{name}/rollback"),
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/admin/backup"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// A host serving the bank, with no admin token (so the admin routes answer on
/// loopback and a request reaches their handlers), and ready: its projections set up,
/// so that `GET /ready` answers 200 rather than a 503 while they start.
async fn host() -> TestHost {
    let host = TestHost::start_with(
        &[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ],
        |_| {},
    )
    .await
    .expect("host starts");
    host.wait_ready().await;
    host
}

async fn description(host: &TestHost) -> Value {
    let response = host
        .client
        .get(format!("{}/openapi.json", host.url))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).expect("the description is JSON")
}

/// Every `(method, path)` the description lists.
fn operations(description: &Value) -> Vec<(String, String, Value)> {
    let paths = description["paths"].as_object().expect("paths object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("path item object");
        for (method, operation) in item {
            if METHODS.contains(&method.as_str()) {
                operations.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    operations
}

/// The placeholders of a path template: `{name}` segments.
fn placeholders(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// A plausible value for a path parameter, naming nothing that exists, so that no
/// request changes anything: the handlers answer "no such thing".
fn plausible(parameter: &str) -> &'static str {
    match parameter {
        "version" | "position" => "1",
        "command" => "no-such-command",
        "stream" => "no-such-stream",
        _ => "no-such-thing",
    }
}

/// Whether a reply came from the router's fallbacks: no route for the path (404
/// `not_found`), or none for the method (405 `method_not_allowed`). The plausible
/// values above make every handler answer with its own code instead.
fn is_fallback(reply: &Reply) -> bool {
    (reply.status == 404 && reply.body["error"]["code"] == "not_found")
        || (reply.status == 405 && reply.body["error"]["code"] == "method_not_allowed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_description_is_openapi_3() {
    let host = host().await;
    let description = description(&host).await;
    let version = description["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(description["info"]["title"], "Tessera");
    assert!(description["info"]["version"].as_str().is_some());
    assert!(!operations(&description).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_described_operation_is_well_formed() {
    let host = host().await;
    let description = description(&host).await;
    let schemas = description["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (method, path, operation) in operations(&description) {
        let name = format!("{} {path}", method.to_uppercase());
        // Every placeholder is declared as a path parameter.
        let declared = path_parameters(&operation);
        for placeholder in placeholders(&path) {
            assert!(
                declared.contains(&placeholder),
                "{name} does not declare its path parameter {placeholder}"
            );
        }
        // Every operation says what it answers.
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{name} documents no response");
        // Every schema reference resolves.
        let text = operation.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let schema = reference.split('"').next().unwrap_or_default();
            assert!(
                schemas.contains_key(schema),
                "{name} refers to a missing schema {schema}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_placeholders_are_described_as_path_parameters() {
    let host = host().await;
    let description = description(&host).await;
    for (method, path, operation) in operations(&description) {
        let expected: BTreeSet<String> = placeholders(&path).into_iter().collect();
        assert_eq!(
            path_parameters(&operation),
            expected,
            "{} {path}: path parameters",
            method.to_uppercase()
        );
    }
}

/// The names of an operation's parameters described as in the path.
fn path_parameters(operation: &Value) -> BTreeSet<String> {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path")
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

/// Sends one request to every described operation, path parameters replaced by
/// [`plausible`] values and a minimal body where one is described; returns each
/// operation's name, description and reply.
async fn call_every_operation(host: &TestHost) -> Vec<(String, Value, Reply)> {
    let description = description(host).await;
    let mut replies = Vec::new();
    for (method, path, operation) in operations(&description) {
        let mut url_path = path.clone();
        for parameter in placeholders(&path) {
            url_path = url_path.replace(&format!("{{{parameter}}}"), plausible(&parameter));
        }
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut request = host
            .client
            .request(http_method, format!("{}{url_path}", host.url));
        let content = &operation["requestBody"]["content"];
        if content.get("application/json").is_some() {
            let body = if path == "/commands/{command}" {
                json!({"aggregate_id": "x", "payload": {}})
            } else {
                json!({})
            };
            request = request.json(&body);
        } else if let Some(content_type) = content.as_object().and_then(|c| c.keys().next()) {
            request = request
                .header("content-type", content_type.as_str())
                .body(Vec::new());
        }
        let reply = Reply::read(request.send().await.expect("response"))
            .await
            .expect("body");
        replies.push((
            format!("{} {url_path}", method.to_uppercase()),
            operation,
            reply,
        ));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_described_operation_is_served() {
    let host = host().await;
    let replies = call_every_operation(&host).await;
    assert!(replies.len() >= ROUTES.len());
    for (name, _, reply) in replies {
        assert!(
            !is_fallback(&reply),
            "{name} is described but not served: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            reply.status < 500,
            "{name}: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_described_operation_answers_a_documented_status() {
    let host = host().await;
    let mut undocumented = Vec::new();
    for (name, operation, reply) in call_every_operation(&host).await {
        let documented = operation["responses"]
            .as_object()
            .expect("responses")
            .contains_key(&reply.status.to_string());
        if !documented {
            undocumented.push(format!("{name} answered {}: {}", reply.status, reply.body));
        }
    }
    assert!(
        undocumented.is_empty(),
        "undocumented answers:\n{}",
        undocumented.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_served_route_is_described() {
    let host = host().await;
    let description = description(&host).await;
    let described: BTreeSet<(String, String)> = operations(&description)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let missing: Vec<_> = ROUTES
        .iter()
        .filter(|(method, path)| !described.contains(&(method.to_string(), path.to_string())))
        .collect();
    assert!(missing.is_empty(), "served but not described: {missing:?}");
    // And each route of the list is really served (it is not a stale entry here).
    for (method, path) in ROUTES {
        let mut url_path = path.to_string();
        for parameter in placeholders(path) {
            url_path = url_path.replace(&format!("{{{parameter}}}"), plausible(&parameter));
        }
        let reply = host
            .request(
                Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                &url_path,
            )
            .await
            .expect("response");
        assert!(
            !is_fallback(&reply),
            "{method} {path} is not served: {} {}",
            reply.status,
            reply.body
        );
    }
    // The description itself is served, and is the one thing left out of it.
    let (status, _) = host.get("/openapi.json").await.expect("openapi");
    assert_eq!(status, 200);
    assert!(!described.iter().any(|(_, path)| path == "/openapi.json"));
}

/// What a request must be is in the description, in a form a client (or a generator of
/// requests such as schemathesis, `make schemathesis`) can check: no parameter is
/// described as possibly null, as a header or query parameter never is; an operation
/// with a path parameter lists the 400 a malformed one gets, and one with a JSON body
/// the 400, 413 and 415 its body can get; every error response has the error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_is_described() {
    let host = host().await;
    let description = description(&host).await;
    let mut wrong = Vec::new();
    for (method, path, operation) in operations(&description) {
        let name = format!("{} {path}", method.to_uppercase());
        let responses = operation["responses"].as_object().expect("responses");
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let types = &parameter["schema"]["type"];
            let nullable = types == "null"
                || types
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == "null"));
            if nullable {
                wrong.push(format!("{name}: {} may be null", parameter["name"]));
            }
        }
        let mut needed = Vec::new();
        if !placeholders(&path).is_empty() {
            needed.push("400");
        }
        if operation["requestBody"]["content"]
            .get("application/json")
            .is_some()
        {
            needed.extend(["400", "413", "415"]);
        }
        for status in needed {
            if !responses.contains_key(status) {
                wrong.push(format!("{name} does not list {status}"));
            }
        }
        for (status, response) in responses {
            let error = status.starts_with('4') || status.starts_with('5');
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            if error && schema != "#/components/schemas/ErrorBody" {
                wrong.push(format!("{name} {status} has no ErrorBody"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
