//! The TypeScript bank against the Rust bank: the bank's differential script
//! (`common::bank_script`, which the Python bank answers too), sent to a host serving the Rust `bank-account`, `account-balance` and
//! `bank-queries` (plugins/bank-account, ...) and to a host serving the TypeScript ones
//! (plugins/bank-account-ts, plugins/account-balance-ts, plugins/bank-queries-ts, built
//! with the SDK in plugins/sdk-ts), both beside the Rust `bank-totals`, must get the
//! same answers: the same statuses, the same error codes, reasons, messages and field
//! errors, the same events (types and data) in the log, and the same query answers.
//! A second test holds the TypeScript read side to the Rust one on every query of
//! `bank-queries`, valid and invalid, and on walks through `accounts` page by page
//! (`common::read_compare`, which the Python read side is held to as well).
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

use serde_json::json;

use crate::common::bank_script::{RUST_BANK, assert_answers_as_rust};
use crate::common::read_compare::{assert_serves, compare_read_sides, host};
use crate::common::{Reply, TestHost, plugins};

/// The TypeScript bank: its command handler, `account-balance` projection and query
/// handler, beside the Rust `bank-totals` (which has no TypeScript twin; the Python one
/// is held to it by tests/differential_py.rs).
const TS_BANK: &[&str] = &[
    plugins::BANK_ACCOUNT_TS,
    plugins::ACCOUNT_BALANCE_TS,
    plugins::BANK_TOTALS,
    plugins::BANK_QUERIES_TS,
];

/// The TypeScript files as each host lists them: (file, name, kind).
const TS_SERVED: &[(&str, &str, &str)] = &[
    ("bank-account-ts.wasm", "bank-account", "command-handler"),
    ("account-balance-ts.wasm", "account-balance", "projection"),
    ("bank-queries-ts.wasm", "bank-queries", "query-handler"),
];

fn assert_built(files: &[&str]) {
    for file in files {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: the TypeScript plugins build with Node 20+ and npm \
             (`make plugins-ts`; the test build's warnings say what failed)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_bank_answers_exactly_as_the_rust_bank() {
    assert_built(TS_BANK);
    assert_answers_as_rust(TS_BANK, TS_SERVED, "TypeScript").await;
}

/// The TypeScript read side (`account-balance-ts` and `bank-queries-ts`) against the Rust
/// one, both behind the Rust `bank-account`: every query of `bank-queries`, valid and
/// invalid, by GET and by POST, and walks through `accounts` page by page (across a
/// deposit that reorders the accounts, and with a cursor the other host returned) get
/// the same statuses, errors and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_read_side_answers_exactly_as_the_rust_one() {
    let files = [
        plugins::BANK_ACCOUNT,
        plugins::ACCOUNT_BALANCE_TS,
        plugins::BANK_TOTALS,
        plugins::BANK_QUERIES_TS,
    ];
    let (rust, typescript) = tokio::join!(host(RUST_BANK), host(&files));
    assert_serves(&typescript, &TS_SERVED[1..]).await;
    compare_read_sides(&rust, &typescript, "TypeScript").await;
}

/// componentize-js imports wasi:http unless told not to; the host offers no network, so
/// it refuses such a component, and its message names the import and says how to
/// build without it (the SDK's build always does).
#[tokio::test(flavor = "multi_thread")]
async fn a_component_importing_wasi_http_is_refused_with_how_to_build_without_it() {
    let file = plugins::BANK_ACCOUNT_TS_WITH_WASI_HTTP;
    assert!(
        Path::new(file).exists(),
        "{file} is missing: the TypeScript plugins build with Node 20+ and npm"
    );
    let host = TestHost::start(&[file]).await.expect("host starts");
    let (status, listing) = host.get("/plugins").await.unwrap();
    assert_eq!(status, 200, "{listing}");
    let plugin = &listing["plugins"][0];
    assert_eq!(
        plugin["file"], "bank-account-ts-with-wasi-http.wasm",
        "{listing}"
    );
    assert_eq!(plugin["status"], "failed", "{listing}");
    let error = plugin["last_error"].as_str().expect("the reason it failed");
    for expected in [
        "imports wasi:http/",
        "does not offer",
        "-d http -d fetch-event",
        "npm run build",
    ] {
        assert!(error.contains(expected), "{expected:?} is not in: {error}");
    }
    // Nothing of it serves.
    let Reply { status, body, .. } = host
        .command("open-account", "1", json!({"owner": "ada"}))
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
}
