//! The bank's differential script: one scripted sequence of commands and queries, sent
//! to a host serving the Rust `bank-account` (plugins/bank-account) and to a host
//! serving the same bank written in another language, must get the same answers: the
//! same statuses, the same error codes, reasons, messages and field errors, the same
//! events (types and data) in the log, and the same query answers from the Rust
//! projections and queries served beside each. `tests/differential.rs` runs it against
//! the TypeScript bank, `tests/differential_py.rs` against the Python one
//! ([`assert_answers_as_rust`]).
//!
//! The script covers what a client meets: accepted commands, business rejections,
//! invalid payloads (wrong types, missing and unknown fields, amounts past 2^53 and past
//! u64), an unknown command, the owner/teller rule with verified claims (both hosts
//! authenticate callers with HS256 tokens), idempotent retries (replayed, and a key
//! reused for another command), and concurrent commands on one account. What differs
//! between two runs by nature (ids, timestamps) is left out of the comparison; the
//! order of the concurrent commands is up to the scheduler, so that part of the log is
//! compared as a set, and its outcomes as counts.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera::auth::{AuthConfig, JwtConfig};

use super::read_compare::assert_serves;
use super::{Reply, TestHost, plugins};

pub const SECRET: &[u8] = b"a-differential-test-hs256-secret-of-32-bytes";

/// One command of the script: the command, the raw JSON body (so that numbers past
/// what `serde_json::Value` holds exactly can be sent), the caller, and headers.
pub struct Step {
    command: &'static str,
    body: String,
    caller: &'static str,
    idempotency_key: Option<&'static str>,
}

pub fn step(command: &'static str, id: &str, payload: &str) -> Step {
    Step {
        command,
        body: format!(r#"{{"aggregate_id": "{id}", "payload": {payload}}}"#),
        caller: "ada",
        idempotency_key: None,
    }
}

impl Step {
    fn by(mut self, caller: &'static str) -> Step {
        self.caller = caller;
        self
    }

    fn key(mut self, key: &'static str) -> Step {
        self.idempotency_key = Some(key);
        self
    }
}

/// The sequential part of the script, in order.
pub fn script() -> Vec<Step> {
    vec![
        // Accepted, and the rules.
        step("open-account", "1", r#"{"owner": "ada"}"#),
        step("open-account", "1", r#"{"owner": "ada"}"#),
        step("deposit", "1", r#"{"amount": 100}"#),
        step("withdraw", "1", r#"{"amount": 30}"#),
        step("withdraw", "1", r#"{"amount": 71}"#),
        step("withdraw", "1", r#"{"amount": 0}"#),
        step("deposit", "1", r#"{"amount": 0}"#),
        step("deposit", "2", r#"{"amount": 5}"#),
        step("withdraw", "2", r#"{"amount": 5}"#),
        // The owner rule: a stranger is refused, a verified teller is not.
        step("withdraw", "1", r#"{"amount": 1}"#).by("bob"),
        step("withdraw", "1", r#"{"amount": 1}"#).by("tom-the-teller"),
        // Invalid payloads: each field error is serde's, word for word.
        step("open-account", "3", r#"{"owner": "  "}"#),
        step("open-account", "3", r#"{}"#),
        step("open-account", "3", r#"{"owner": 5}"#),
        step("open-account", "3", r#"{"owner": null}"#),
        step("open-account", "3", r#"{"owner": ["ada"]}"#),
        step("open-account", "3", r#"{"owner": "x", "extra": 1}"#),
        step("open-account", "3", r#"{"extra": 1, "owner": 5}"#),
        step("open-account", "3", r#"{"owner": 5, "extra": 1}"#),
        step("open-account", "3", r#"{"owner": 5, "Owner": "ada"}"#),
        step("deposit", "1", r#"{"amount": -5}"#),
        step("deposit", "1", r#"{"amount": 1.5}"#),
        step("deposit", "1", r#"{"amount": 5.0}"#),
        step("deposit", "1", r#"{"amount": 1e3}"#),
        step("deposit", "1", r#"{"amount": "5"}"#),
        step("deposit", "1", r#"{"amount": true}"#),
        step("deposit", "1", r#"{"amount": {"value": 5}}"#),
        step("deposit", "1", r#"{"amount": 18446744073709551616}"#),
        step("deposit", "1", r#"{"amount": 5, "note": "rent"}"#),
        step("deposit", "1", r#"{"amount": 5, "amount": 6}"#),
        step("deposit", "1", r#"{"note": "rent"}"#),
        // Payloads the host itself refuses, before any plugin.
        step("deposit", "1", "[5]"),
        step("deposit", "1", "null"),
        step("close-account", "1", "{}"),
        // Amounts past 2^53 go through exactly, up to u64's largest; a balance stops
        // at i64's largest (one past it is refused, balance_limit), and the refusals'
        // messages carry the exact amounts.
        step("open-account", "big", r#"{"owner": "ada"}"#),
        step("deposit", "big", r#"{"amount": 9007199254740993}"#),
        step("deposit", "big", r#"{"amount": 9214364837600034815}"#),
        step("deposit", "big", r#"{"amount": 18437736874454810622}"#),
        step("withdraw", "big", r#"{"amount": 18446744073709551615}"#),
        step("deposit", "big", r#"{"amount": 18446744073700000000}"#),
        step("withdraw", "big", r#"{"amount": 18446744073700000001}"#),
        // Idempotent retries: the same key and command replay the first answer, a key
        // reused for another command is refused, a refused command keeps its key too.
        step("deposit", "1", r#"{"amount": 7}"#).key("deposit-7"),
        step("deposit", "1", r#"{"amount": 7}"#).key("deposit-7"),
        step("deposit", "1", r#"{"amount": 8}"#).key("deposit-7"),
        step("withdraw", "1", r#"{"amount": 1000}"#).key("too-much"),
        step("withdraw", "1", r#"{"amount": 1000}"#).key("too-much"),
        // Unicode goes through as it came.
        step("open-account", "4", r#"{"owner": "Zoë Ω 🏦"}"#),
    ]
}

/// The queries asked after the script, each with every event applied.
pub const QUERIES: &[&str] = &[
    "/queries/account?id=1",
    "/queries/account?id=big",
    "/queries/account?id=4",
    "/queries/account?id=nobody",
    "/queries/account?id=race",
    "/queries/account?id=race-in",
    "/queries/accounts?limit=2",
    "/queries/totals",
];

pub fn token(caller: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let (sub, roles) = match caller {
        "tom-the-teller" => ("tom", json!(["teller"])),
        other => (other, json!([])),
    };
    let claims = json!({"sub": sub, "roles": roles, "exp": now + 3600, "iat": now});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

/// The Rust bank: command handler, projections, queries.
pub const RUST_BANK: &[&str] = &[
    plugins::BANK_ACCOUNT,
    plugins::ACCOUNT_BALANCE,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES,
];

/// A host authenticating callers with HS256 tokens and serving `files`.
pub async fn bank(files: &[&str]) -> TestHost {
    let dir = Arc::new(TempDir::new().unwrap());
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for &plugin in files {
        let name = Path::new(plugin).file_name().unwrap();
        std::fs::copy(plugin, plugins_dir.join(name)).unwrap();
    }
    let secret = dir.path().join("hs256.secret");
    std::fs::write(&secret, SECRET).unwrap();
    TestHost::start_configured(dir, move |config| {
        config.auth = AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret_file: Some(secret),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
    })
    .await
    .expect("host starts")
}

/// What differs between two runs by nature: ids and times.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| {
                    !matches!(
                        key.as_str(),
                        "request_id" | "timestamp" | "updated_at" | "metadata"
                    )
                })
                .map(|(key, value)| (key.clone(), normalize(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

pub async fn send(host: &TestHost, client: &reqwest::Client, step: &Step) -> Reply {
    let mut request = client
        .post(format!("{}/commands/{}", host.url, step.command))
        .header("content-type", "application/json")
        .bearer_auth(token(step.caller))
        .body(step.body.clone());
    if let Some(key) = step.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    Reply::read(request.send().await.expect("the host answers"))
        .await
        .expect("a reply")
}

/// The whole log through `GET /events`, page by page, as a verified caller.
pub async fn read_log(host: &TestHost) -> Vec<Value> {
    host.with_bearer(&token("ada"))
        .read_log()
        .await
        .expect("reading the log")
}

/// One answer as compared: status, the replay header, and the normalized body.
pub fn answer(reply: &Reply) -> Value {
    json!({
        "status": reply.status,
        "replayed": reply.header("idempotent-replayed"),
        "body": normalize(&reply.body),
    })
}

/// Everything a run of the script showed.
pub struct Transcript {
    pub answers: Vec<(String, Value)>,
    pub concurrent_statuses: Vec<Value>,
    pub log_in_order: Vec<Value>,
    pub log_concurrent: Vec<Value>,
    pub queries: Vec<(String, Value)>,
}

/// How many commands run at once: half withdraw 15 from an account holding 60 (so
/// exactly four pass, whatever the order), half deposit 10 on another account.
pub const CONCURRENT: usize = 16;

pub async fn run(host: &TestHost) -> Transcript {
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for step in script() {
        let reply = send(host, &client, &step).await;
        let label = format!("{} {} by {}", step.command, step.body, step.caller);
        answers.push((label, answer(&reply)));
    }

    // Concurrent commands: withdrawals racing on one account that holds enough for
    // only some of them, and deposits racing on another, each on its own client (its
    // own connection). The host's optimistic concurrency and retries decide the order;
    // how many withdrawals pass, and the balances, do not depend on it.
    let opened = send(
        host,
        &client,
        &step("open-account", "race", r#"{"owner": "ada"}"#),
    )
    .await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let funded = send(host, &client, &step("deposit", "race", r#"{"amount": 60}"#)).await;
    assert_eq!(funded.status, 200, "{}", funded.body);
    let opened = send(
        host,
        &client,
        &step("open-account", "race-in", r#"{"owner": "ada"}"#),
    )
    .await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let sequential_events = read_log(host).await.len();
    let mut tasks = Vec::new();
    for i in 0..CONCURRENT {
        let (command, body) = if i % 2 == 0 {
            (
                "withdraw",
                r#"{"aggregate_id": "race", "payload": {"amount": 15}}"#,
            )
        } else {
            (
                "deposit",
                r#"{"aggregate_id": "race-in", "payload": {"amount": 10}}"#,
            )
        };
        let url = host.url.clone();
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{url}/commands/{command}"))
                .header("content-type", "application/json")
                .bearer_auth(token("ada"))
                .body(body)
                .send()
                .await
                .expect("the host answers");
            let reply = Reply::read(response).await.expect("a reply");
            json!({
                "command": command,
                "status": reply.status,
                "code": reply.body["error"]["code"],
                "reason": reply.body["error"]["details"]["reason"],
            })
        }));
    }
    let mut concurrent_statuses = Vec::new();
    for task in tasks {
        concurrent_statuses.push(task.await.expect("the task ends"));
    }
    concurrent_statuses.sort_by_key(|outcome| outcome.to_string());

    let log = read_log(host).await;
    let head = log.last().map(|event| event["position"].clone());
    let events: Vec<Value> = log
        .iter()
        .map(|event| {
            json!({
                "stream": event["stream"],
                "type": event["type"],
                "data": event["data"],
                "principal": event["metadata"]["principal"],
            })
        })
        .collect();
    let log_in_order = events[..sequential_events].to_vec();
    let mut log_concurrent = events[sequential_events..].to_vec();
    log_concurrent.sort_by_key(|event| event.to_string());

    let mut queries = Vec::new();
    for path in QUERIES {
        let mut request = client
            .get(format!("{}{path}", host.url))
            .bearer_auth(token("ada"))
            .header("tessera-max-wait", "30000");
        if let Some(head) = &head {
            request = request.header("tessera-min-position", head.to_string());
        }
        let reply = Reply::read(request.send().await.expect("the host answers"))
            .await
            .expect("a reply");
        queries.push((
            path.to_string(),
            json!({"status": reply.status, "body": normalize(&reply.body)}),
        ));
    }

    Transcript {
        answers,
        concurrent_statuses,
        log_in_order,
        log_concurrent,
        queries,
    }
}

/// Serves `files` (the bank, or part of it, in `language`; `served` lists those files
/// as the host lists them: file, name, kind) and the Rust bank each in its own host,
/// runs the script on both, and asserts that every answer, the log and every query
/// answer are the same.
pub async fn assert_answers_as_rust(files: &[&str], served: &[(&str, &str, &str)], language: &str) {
    let (rust, other) = tokio::join!(bank(RUST_BANK), bank(files));

    // Each host really serves its own plugins: the other language's are the large
    // componentized files, not copies of the Rust ones.
    assert_serves(&other, served).await;
    assert_serves(
        &rust,
        &[
            ("bank_account.wasm", "bank-account", "command-handler"),
            ("account_balance.wasm", "account-balance", "projection"),
            ("bank_queries.wasm", "bank-queries", "query-handler"),
        ],
    )
    .await;
    for host in [&rust, &other] {
        let (_, listing) = host.get("/plugins").await.unwrap();
        let handler = listing["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|plugin| plugin["plugin"]["kind"] == "command-handler")
            .expect("a command handler is loaded");
        assert_eq!(
            handler["plugin"]["handles"],
            json!(["open-account", "deposit", "withdraw"])
        );
    }

    let (expected, actual) = tokio::join!(run(&rust), run(&other));

    assert_eq!(expected.answers.len(), actual.answers.len());
    for ((label, want), (_, got)) in expected.answers.iter().zip(&actual.answers) {
        assert_eq!(
            got, want,
            "{label}: the {language} bank answered differently"
        );
    }
    // The script does reach every kind of answer, so the comparison above means something.
    let statuses: Vec<u64> = expected
        .answers
        .iter()
        .map(|(_, answer)| answer["status"].as_u64().unwrap())
        .collect();
    for status in [200, 400, 404, 422] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }
    assert!(
        expected
            .answers
            .iter()
            .any(|(_, a)| a["replayed"] == "true"),
        "no replayed answer"
    );

    assert_eq!(
        actual.log_in_order, expected.log_in_order,
        "the log differs"
    );
    assert!(
        expected.log_in_order.len() >= 8,
        "{:?}",
        expected.log_in_order
    );
    assert_eq!(
        actual.concurrent_statuses, expected.concurrent_statuses,
        "the concurrent commands' outcomes differ"
    );
    let passed = |command: &str| {
        expected
            .concurrent_statuses
            .iter()
            .filter(|outcome| outcome["command"] == command && outcome["status"] == 200)
            .count()
    };
    assert_eq!(
        (passed("withdraw"), passed("deposit")),
        (4, CONCURRENT / 2),
        "{:?}",
        expected.concurrent_statuses
    );
    assert_eq!(
        actual.log_concurrent, expected.log_concurrent,
        "the concurrent part of the log differs"
    );
    for ((path, want), (_, got)) in expected.queries.iter().zip(&actual.queries) {
        assert_eq!(got, want, "{path}: the query answers differ");
    }
    assert_eq!(
        expected.queries[0].1["status"], 200,
        "{:?}",
        expected.queries
    );
}
