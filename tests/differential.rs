//! The TypeScript bank against the Rust bank: the bank's differential script
//! (`common::bank_script`: accepted, rejected and invalid commands, the owner/teller
//! rule, idempotent retries, concurrent commands, and queries) sent to a host serving
//! the Rust `bank-account` (plugins/bank-account) and to a host serving the TypeScript
//! one (plugins/bank-account-ts, built with the SDK in plugins/sdk-ts) must get the same
//! answers, the same log and the same query answers; and a component importing
//! `wasi:http` is refused, saying how to build without it.

use std::path::Path;

use serde_json::json;

use crate::common::bank_script::assert_answers_as_rust;
use crate::common::{Reply, TestHost, plugins};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_bank_answers_exactly_as_the_rust_bank() {
    assert!(
        Path::new(plugins::BANK_ACCOUNT_TS).exists(),
        "{} is missing: the TypeScript plugins build with Node 20+ and npm \
         (`make plugins-ts`; the test build's warnings say what failed)",
        plugins::BANK_ACCOUNT_TS
    );
    assert_answers_as_rust(
        plugins::BANK_ACCOUNT_TS,
        "bank-account-ts.wasm",
        "TypeScript",
    )
    .await;
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
