//! The Python read side against the Rust one, and a deployment mixing three languages.
//!
//! 1. One scripted sequence of commands goes to a host serving the Rust bank and to a
//!    host serving the Rust `bank-account` and `account-balance` beside the Python
//!    `bank-totals` and `bank-queries` (plugins/bank-totals-py, plugins/bank-queries-py,
//!    built with the SDK in plugins/sdk-py). Every query of `bank-queries` is then asked
//!    of both, valid and invalid, by GET and by POST, and a walk through `accounts`
//!    page by page (also across a deposit that reorders the accounts, and with a cursor
//!    the other host returned): the statuses, the error codes, messages and field
//!    errors, and the answers must be the same. The script reaches amounts past SQLite's
//!    64 bits, which both projections store as SQLite does (the total becomes a REAL).
//! 2. The TypeScript `bank-account` (plugins/bank-account-ts), the Rust projections and
//!    the Python `bank-queries` in one host answer as the all-Rust host does.
//! 3. The Python `bank-account` (plugins/bank-account-py) answers the bank's differential
//!    script (`common::bank_script`, the one the TypeScript bank answers in
//!    tests/differential.rs) exactly as the Rust one: statuses, bodies, log, queries.
//!
//! What differs between two runs by nature (request ids, timestamps) is left out.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::bank_script::assert_answers_as_rust;
use crate::common::{Reply, TestHost, plugins};

/// The commands, in order: (command, aggregate id, payload).
fn script() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("open-account", "a", json!({"owner": "ada"})),
        ("open-account", "b", json!({"owner": "Zoë Ω 🏦"})),
        (
            "open-account",
            "c",
            json!({"owner": "bob \"the\" builder\n"}),
        ),
        ("open-account", "d", json!({"owner": "dee"})),
        ("open-account", "e", json!({"owner": "eve"})),
        ("deposit", "a", json!({"amount": 100})),
        ("deposit", "b", json!({"amount": 250})),
        ("deposit", "c", json!({"amount": 100})),
        ("deposit", "d", json!({"amount": 7})),
        ("withdraw", "a", json!({"amount": 30})),
        ("withdraw", "d", json!({"amount": 8})),
        ("deposit", "e", json!({"amount": 70})),
        ("open-account", "a", json!({"owner": "ada"})),
        // Past 2^53, and summed in the totals past SQLite's signed 64 bits (an account
        // holds at most i64::MAX), where SQLite's sum becomes a REAL.
        ("open-account", "big", json!({"owner": "ada"})),
        ("deposit", "big", json!({"amount": 9007199254740993_u64})),
        ("open-account", "huge", json!({"owner": "ada"})),
        (
            "deposit",
            "huge",
            json!({"amount": 9223372036854775000_u64}),
        ),
    ]
}

/// A query: GET with a query string, or POST with a JSON body.
enum Ask {
    Get(String),
    Post(&'static str, Value),
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every query of bank-queries, with parameters good and bad.
fn queries() -> Vec<Ask> {
    let mut asks: Vec<Ask> = [
        "account?id=a",
        "account?id=b",
        "account?id=c",
        "account?id=big",
        "account?id=nobody",
        "account",
        "account?id=",
        "account?id=a&extra=1",
        "accounts",
        "accounts?limit=1",
        "accounts?limit=3",
        "accounts?limit=500",
        "accounts?limit=0",
        "accounts?limit=501",
        "accounts?limit=abc",
        "accounts?limit=-1",
        "accounts?limit=%2B2",
        "accounts?limit=4294967296",
        "accounts?limit=1.5",
        "accounts?limit=%202",
        "accounts?limit=%E2%82%AC%0A%22",
        "accounts?cursor=zz",
        "accounts?cursor=abc",
        "accounts?cursor=",
        "accounts?cursor=%2Ba%2Bb",
        "totals",
        "totals?ignored=1",
        "nope",
    ]
    .iter()
    .map(|q| Ask::Get(q.to_string()))
    .collect();
    // Cursors that are hex but not of a cursor, and the forms serde also reads.
    for cursor in [
        r#"{"as_of":1}"#,
        r#"{"as_of":1.0,"balance":1,"id":"a"}"#,
        r#"{"as_of":1,"balance":1,"id":"a","id":"b"}"#,
        r#"{"as_of":1,"balance":true,"id":"a"}"#,
        r#"{"as_of":99,"balance":100,"id":"a","more":[1,{"x":null}]}"#,
        r#" [99, 100, "a"] "#,
        r#"[99, 100]"#,
        r#"{"as_of":99,"balance":100,"id":"\ud800"}"#,
        r#"{"as_of":99,"balance":NaN,"id":"a"}"#,
        r#"{"as_of":99,"balance":18446744073709551615,"id":"a"}"#,
        r#"{"as_of":-5,"balance":-9223372036854775808,"id":""}"#,
        "\"text\"",
        "",
    ] {
        asks.push(Ask::Get(format!("accounts?limit=2&cursor={}", hex(cursor))));
        asks.push(Ask::Get(format!(
            "accounts?limit=2&cursor={}",
            hex(cursor).to_uppercase()
        )));
    }
    for (query, body) in [
        ("accounts", json!({"limit": 2})),
        ("accounts", json!({"limit": 2.0})),
        ("accounts", json!({"limit": 1e20})),
        ("accounts", json!({"limit": 0.00001})),
        ("accounts", json!({"limit": true})),
        ("accounts", json!({"limit": null})),
        ("accounts", json!({"limit": [1]})),
        ("accounts", json!({"limit": {"b": 1, "a": "é\u{1b}"}})),
        ("accounts", json!({"limit": -3})),
        ("accounts", json!({"cursor": 5})),
        ("account", json!({"id": "a"})),
        ("account", json!({"id": 5})),
        ("account", json!({"id": null})),
        ("account", json!({"id": ["a"]})),
        ("totals", json!({})),
    ] {
        asks.push(Ask::Post(query, body));
    }
    asks
}

/// What differs between two runs by nature: ids and times.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "request_id" | "timestamp" | "updated_at")
                })
                .map(|(key, value)| (key.clone(), normalize(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// A host serving `files`, waiting until each is loaded.
async fn host(files: &[&str]) -> TestHost {
    for file in files {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: the Python plugins build with python3 and componentize-py \
             (`make plugins-py`), the TypeScript ones with Node 20+ and npm; the test \
             build's warnings say what failed"
        );
    }
    let host = TestHost::start(files).await.expect("host starts");
    let (status, listing) = host.get("/plugins").await.unwrap();
    assert_eq!(status, 200, "{listing}");
    let loaded = listing["plugins"].as_array().unwrap();
    for file in files {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let plugin = loaded
            .iter()
            .find(|plugin| plugin["file"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {listing}"));
        assert_eq!(plugin["status"], "active", "{name}: {listing}");
    }
    host
}

/// Sends the script; returns the log position of the last event.
async fn run_script(host: &TestHost) -> u64 {
    let mut head = 0;
    for (command, id, payload) in script() {
        let Reply { status, body, .. } = host.command(command, id, payload.clone()).await.unwrap();
        if status == 200 {
            head = body["position"].as_u64().expect("a position");
        }
        // The script's answers are compared by tests/differential.rs; here they only
        // have to be the same on both hosts, which the read models then show.
        assert!(
            matches!(status, 200 | 422),
            "{command} {id} {payload}: {status} {body}"
        );
    }
    head
}

/// Asks `ask`, once the read models have reached `head`.
async fn ask(host: &TestHost, ask: &Ask, head: u64) -> Reply {
    let request = match ask {
        Ask::Get(query) => host.client.get(format!("{}/queries/{query}", host.url)),
        Ask::Post(query, body) => host
            .client
            .post(format!("{}/queries/{query}", host.url))
            .json(body),
    };
    let response = request
        .header("tessera-min-position", head.to_string())
        .header("tessera-max-wait", "30000")
        .send()
        .await
        .expect("the host answers");
    Reply::read(response).await.expect("a reply")
}

fn label(ask: &Ask) -> String {
    match ask {
        Ask::Get(query) => format!("GET /queries/{query}"),
        Ask::Post(query, body) => format!("POST /queries/{query} {body}"),
    }
}

fn seen(reply: &Reply) -> Value {
    json!({"status": reply.status, "body": normalize(&reply.body)})
}

/// Every page of `accounts?limit=N`, following `next_cursor` to the end; before the
/// second page, `between` (a command) runs, if any.
async fn walk(
    host: &TestHost,
    limit: usize,
    mut head: u64,
    between: Option<(&str, &str, Value)>,
) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut query = format!("accounts?limit={limit}");
    let mut between = between;
    loop {
        let reply = ask(host, &Ask::Get(query.clone()), head).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        pages.push(reply.body.clone());
        if let Some((command, id, payload)) = between.take() {
            let Reply { status, body, .. } = host.command(command, id, payload).await.unwrap();
            assert_eq!(status, 200, "{body}");
            head = body["position"].as_u64().unwrap();
        }
        match reply.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("accounts?limit={limit}&cursor={cursor}"),
            None => return pages,
        }
        assert!(pages.len() < 50, "the walk does not end: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_read_side_answers_exactly_as_the_rust_one() {
    let (rust, python) = tokio::join!(
        host(&[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ]),
        host(&[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS_PY,
            plugins::BANK_QUERIES_PY,
        ]),
    );
    // The Python host really serves the Python plugins, as the same names and versions.
    let (_, listing) = python.get("/plugins").await.unwrap();
    for (file, name, kind) in [
        ("bank-totals-py.wasm", "bank-totals", "projection"),
        ("bank-queries-py.wasm", "bank-queries", "query-handler"),
    ] {
        let plugin = listing["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|plugin| plugin["file"] == file)
            .unwrap_or_else(|| panic!("{file} is not served: {listing}"));
        assert_eq!(plugin["plugin"]["name"], name, "{listing}");
        assert_eq!(plugin["plugin"]["kind"], kind, "{listing}");
        assert_eq!(plugin["plugin"]["contract"], "0.2.0", "{listing}");
    }
    let (rust_head, python_head) = tokio::join!(run_script(&rust), run_script(&python));
    assert_eq!(rust_head, python_head, "the two logs differ in length");
    let head = rust_head;

    let mut statuses = Vec::new();
    for query in queries() {
        let (want, got) = tokio::join!(ask(&rust, &query, head), ask(&python, &query, head));
        assert_eq!(
            seen(&got),
            seen(&want),
            "{}: the Python read side answered differently",
            label(&query)
        );
        statuses.push(want.status);
    }
    // The comparison reaches every kind of answer.
    for status in [200, 404, 422] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }
    let totals = ask(&rust, &Ask::Get("totals".into()), head).await;
    assert!(
        totals.body["total_balance"].is_f64(),
        "the total went past 64 bits and is a REAL: {}",
        totals.body
    );
    assert_eq!(totals.body["open_accounts"], 7, "{}", totals.body);

    // Walks, page by page: each sees every account once, as of its first page.
    for limit in [1, 2, 4] {
        let (want, got) = tokio::join!(
            walk(&rust, limit, head, None),
            walk(&python, limit, head, None)
        );
        assert_eq!(got, want, "the walk with limit {limit} differs");
        let seen: usize = want
            .iter()
            .map(|p| p["items"].as_array().unwrap().len())
            .sum();
        assert_eq!(seen, 7, "{want:?}");
    }
    // A deposit between two pages moves an account to the top; the walk still sees the
    // balances as of its first page, on both.
    let reorder = || Some(("deposit", "e", json!({"amount": 1000})));
    let (want, got) = tokio::join!(
        walk(&rust, 2, head, reorder()),
        walk(&python, 2, head, reorder())
    );
    assert_eq!(got, want, "the walk across a deposit differs");
    let ids: Vec<&str> = want
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    let head = head + 1;

    // A cursor one host returned goes on on the other.
    let first = ask(&rust, &Ask::Get("accounts?limit=2".into()), head).await;
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let next = Ask::Get(format!("accounts?limit=2&cursor={cursor}"));
    let (want, got) = tokio::join!(ask(&rust, &next, head), ask(&python, &next, head));
    assert_eq!(seen(&got), seen(&want));
    let python_first = ask(&python, &Ask::Get("accounts?limit=2".into()), head).await;
    assert_eq!(python_first.body["next_cursor"], first.body["next_cursor"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typescript_commands_rust_projections_and_python_queries_serve_together() {
    let (rust, mixed) = tokio::join!(
        host(&[
            plugins::BANK_ACCOUNT,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ]),
        host(&[
            plugins::BANK_ACCOUNT_TS,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES_PY,
        ]),
    );
    let (rust_head, mixed_head) = tokio::join!(run_script(&rust), run_script(&mixed));
    assert_eq!(rust_head, mixed_head);
    let head = rust_head;

    // What the mixed host answers, on its own terms.
    let account = ask(&mixed, &Ask::Get("account?id=a".into()), head).await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert_eq!(account.body["balance"], 70);
    assert_eq!(account.body["owner"], "ada");
    assert_eq!(account.body["version"], 3);
    let page = ask(&mixed, &Ask::Get("accounts?limit=3".into()), head).await;
    let ids: Vec<&str> = page.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["huge", "big", "b"], "{}", page.body);
    assert!(page.body["next_cursor"].is_string(), "{}", page.body);
    let missing = ask(&mixed, &Ask::Get("account?id=nobody".into()), head).await;
    missing.assert_error(404, "not_found");
    let refused = ask(&mixed, &Ask::Get("accounts?limit=0".into()), head).await;
    refused.assert_error(422, "validation_failed");

    // And the same answers as the all-Rust host, for every query.
    for query in queries() {
        let (want, got) = tokio::join!(ask(&rust, &query, head), ask(&mixed, &query, head));
        assert_eq!(
            seen(&got),
            seen(&want),
            "{}: the mixed host differs",
            label(&query)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_bank_answers_exactly_as_the_rust_bank() {
    assert!(
        Path::new(plugins::BANK_ACCOUNT_PY).exists(),
        "{} is missing: the Python plugins build with python3 \
         (`make plugins-py`; the test build's warnings say what failed)",
        plugins::BANK_ACCOUNT_PY
    );
    assert_answers_as_rust(plugins::BANK_ACCOUNT_PY, "bank-account-py.wasm", "Python").await;
}
