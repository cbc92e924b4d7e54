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

use crate::common::bank_script::assert_answers_as_rust;
use crate::common::plugins;
use crate::common::read_compare::{
    Ask, ask, assert_serves, compare_read_sides, host, label, queries, run_script, seen,
};

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
    assert_serves(
        &python,
        &[
            ("bank-totals-py.wasm", "bank-totals", "projection"),
            ("bank-queries-py.wasm", "bank-queries", "query-handler"),
        ],
    )
    .await;
    compare_read_sides(&rust, &python, "Python").await;
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
    assert_answers_as_rust(
        &[
            plugins::BANK_ACCOUNT_PY,
            plugins::ACCOUNT_BALANCE,
            plugins::BANK_TOTALS,
            plugins::BANK_QUERIES,
        ],
        &[("bank-account-py.wasm", "bank-account", "command-handler")],
        "Python",
    )
    .await;
}
