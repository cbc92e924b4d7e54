//! Test plugin: a query handler over `test-sql-projection` whose queries run hostile
//! SQL through `tessera_sdk::read`, and `sql-ping`, which behaves.
//!
//! - `sql-ping`: a trivial read; answers `{"pong": true}`.
//! - `sql-notes`: what the projection holds: `notes` (rows in `notes`), `counter`
//!   (the counter every `SqlNote` raises) and `attempts` (rows in `attempts`).
//! - `sql-attempts`: the projection's `attempts` table (`position`, `what`,
//!   `outcome`).
//! - `sql-spin` (any parameters, to make each call distinct): an endless recursive
//!   CTE. `sql-spin-retry`: the same, started again whenever it fails, for ever.
//! - `sql-slow` (`n`): a CTE that ends after counting to `n`.
//! - `sql-memory` (`what`): one of `test_sql_kit::MEMORY`.
//! - `sql-temp-tricks`: tries to create temporary objects on its read-only
//!   connection; answers each attempt's outcome, `denied: <error>` or `allowed`.
//! - `sql-deep-answer` (`depth`): an answer nested `depth` deep.

use serde_json::Value;
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    PluginInfo, Refusal as WitRefusal,
};
use tessera_sdk::__bindings::query::exports::tessera::plugin0_2_0::querier::Guest;
use tessera_sdk::__private::query::{describe, handle};
use tessera_sdk::{Json, Params, QueryHandler, Refusal, json, params, read};
use test_sql_kit as kit;

pub struct SqlQuery;

const PROJECTION: &str = "test-sql-projection";

impl QueryHandler for SqlQuery {
    const READS: &'static [&'static str] = &[PROJECTION];
    const QUERIES: &'static [&'static str] = &[
        "sql-ping",
        "sql-notes",
        "sql-attempts",
        "sql-spin",
        "sql-spin-retry",
        "sql-slow",
        "sql-memory",
        "sql-temp-tricks",
        "sql-deep-answer",
    ];

    fn handle(name: &str, params: Params) -> Result<Json, Refusal> {
        match name {
            "sql-ping" => {
                read(PROJECTION, "SELECT 1 AS one", params![])?;
                Ok(json!({ "pong": true }))
            }
            "sql-notes" => {
                let rows = read(
                    PROJECTION,
                    "SELECT (SELECT count(*) FROM notes) AS notes, \
                            (SELECT n FROM counter WHERE id = 1) AS counter, \
                            (SELECT count(*) FROM attempts) AS attempts",
                    params![],
                )?;
                Ok(rows.to_json().into_iter().next().unwrap_or(Json::Null))
            }
            "sql-attempts" => {
                let rows = read(
                    PROJECTION,
                    "SELECT position, what, outcome FROM attempts ORDER BY seq",
                    params![],
                )?;
                Ok(json!({ "attempts": rows.to_json() }))
            }
            "sql-spin" => {
                let rows = read(PROJECTION, kit::ENDLESS, params![])?;
                Ok(json!({ "rows": rows.to_json() }))
            }
            "sql-spin-retry" => loop {
                let _ = read(PROJECTION, kit::ENDLESS, params![]);
            },
            "sql-slow" => {
                let n: i64 = params.get("n")?.unwrap_or(kit::SLOW_DEFAULT);
                let rows = read(PROJECTION, kit::SLOW, params![n])?;
                Ok(json!({ "rows": rows.to_json() }))
            }
            "sql-memory" => {
                let what: String = params.require("what")?;
                let sql = kit::memory(&what)
                    .ok_or_else(|| Refusal::invalid("what", format!("unknown: {what}")))?;
                let rows = read(PROJECTION, sql, params![])?;
                // Whatever came back, answer only its shape.
                Ok(json!({ "rows": rows.rows.len(), "columns": rows.columns.len() }))
            }
            "sql-temp-tricks" => {
                let report: Vec<Json> = kit::READ_TEMP_TRICKS
                    .iter()
                    .map(|sql| {
                        let outcome = match read(PROJECTION, sql, params![]) {
                            Ok(_) => "allowed".to_string(),
                            Err(Refusal::Rejected { message, .. }) => format!("denied: {message}"),
                            Err(other) => format!("denied: {other:?}"),
                        };
                        json!({ "what": sql, "outcome": outcome })
                    })
                    .collect();
                Ok(json!({ "attempts": report }))
            }
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

struct Exports;

impl Guest for Exports {
    fn describe() -> PluginInfo {
        describe::<SqlQuery>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn handle(name: String, params: String) -> Result<String, WitRefusal> {
        if name == "sql-deep-answer" {
            let params: Value = serde_json::from_str(&params).unwrap_or(Value::Null);
            let depth = params["depth"]
                .as_str()
                .and_then(|d| d.parse::<usize>().ok())
                .or_else(|| params["depth"].as_u64().map(|d| d as usize))
                .unwrap_or(1000);
            return Ok(kit::nested_json(depth));
        }
        handle::<SqlQuery>(name, params)
    }
}

tessera_sdk::__bindings::query::export_query_handler!(Exports);
