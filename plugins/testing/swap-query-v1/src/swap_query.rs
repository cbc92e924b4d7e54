//! The `swap-query` query handler, shared by `test-swap-query-v1` and
//! `test-swap-query-v2`: the two crates differ only in [`CODE`](super::CODE) and the
//! version they report.
//!
//! Its one query, `swap-probe`, answers with the code that ran it, twice (at the top
//! and inside the data it read), plus a summary of the `account-balance` read model,
//! so a test can tell whether an answer came wholly from one version.

use tessera_sdk::{Json, Params, QueryHandler, Refusal, json, params, read};

use super::CODE;

pub struct SwapQuery;

impl QueryHandler for SwapQuery {
    const READS: &'static [&'static str] = &["account-balance"];
    const QUERIES: &'static [&'static str] = &["swap-probe"];

    fn handle(name: &str, _params: Params) -> Result<Json, Refusal> {
        if name != "swap-probe" {
            return Err(Refusal::not_found(format!("no query named {name}")));
        }
        let rows = read(
            "account-balance",
            "SELECT COUNT(*) AS accounts, COALESCE(SUM(balance), 0) AS total FROM accounts",
            params![],
        )?;
        let mut summary = rows
            .to_json()
            .into_iter()
            .next()
            .unwrap_or_else(|| json!({ "accounts": 0, "total": 0 }));
        summary["read_by"] = json!(CODE);
        Ok(json!({ "code": CODE, "accounts": summary }))
    }
}
