//! Test plugin: the `tally-queries-v2` query handler (query `v2-tallies`, reading
//! `tally-totals-v2`), a plugin of contract 0.2.0 on the SDK. It answers what
//! `tally-queries-v1` answers: `{"tallies": [{"stream", "total", "events"}...],
//! "calls": n}`.

use tessera_sdk::{Json, Params, QueryHandler, Refusal, json, params, read};
use test_contract_kit as kit;

const PROJECTION: &str = "tally-totals-v2";

pub struct QueriesV2;

impl QueryHandler for QueriesV2 {
    const READS: &'static [&'static str] = &[PROJECTION];
    const QUERIES: &'static [&'static str] = &["v2-tallies"];

    fn handle(name: &str, _params: Params) -> Result<Json, Refusal> {
        if name != "v2-tallies" {
            return Err(Refusal::not_found(format!("no query named {name}")));
        }
        let tallies = read(PROJECTION, kit::TALLIES, params![])?.to_json();
        let calls = read(PROJECTION, kit::CALLS, params![])?
            .to_json()
            .first()
            .and_then(|row| row["calls"].as_i64())
            .unwrap_or(0);
        Ok(json!({ "tallies": tallies, "calls": calls }))
    }
}

tessera_sdk::query_handler!(QueriesV2, name = "tally-queries-v2");
