//! Test plugin: a query handler with one query, `count-calls` (any `n`, to make each
//! request its own cache key), which answers how many queries the instance it runs in
//! has answered, this one included: 1 means a fresh instance. It is a second plugin
//! beside `test-rogue-query`'s `rogue-count`, so the instance-reuse tests can show that
//! one plugin's instances never answer for another. It declares that it reads
//! `account-balance` (the bank's projection), so a host serving the bank routes it.

use tessera_sdk::{Json, Params, QueryHandler, Refusal, json};
use test_rogue_kit as kit;

pub struct CountQuery;

impl QueryHandler for CountQuery {
    const READS: &'static [&'static str] = &["account-balance"];
    const QUERIES: &'static [&'static str] = &["count-calls"];

    fn handle(name: &str, _params: Params) -> Result<Json, Refusal> {
        match name {
            "count-calls" => Ok(json!({ "calls": kit::count_call() })),
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

tessera_sdk::query_handler!(CountQuery, name = "test-count-query");
