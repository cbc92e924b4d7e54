//! Test plugin: the `tally-queries-v1` query handler (query `v1-tallies`, reading
//! `tally-totals-v1`), a plugin of contract 0.1.0 written against
//! `wit/deps/tessera-plugin-0.1.0` with wit-bindgen. It answers every stream's total
//! and event count, and the calls the projection counted:
//! `{"tallies": [{"stream", "total", "events"}...], "calls": n}`.

use serde_json::{Map, Value as Json, json};

use bindings::exports::tessera::plugin::querier::Guest;
use bindings::tessera::plugin::read_store::query;
use bindings::tessera::plugin::sql_types::{Rows, Value};
use bindings::tessera::plugin::types::{
    PluginDetails, PluginInfo, QueryHandlerDetails, Refusal, Rejection,
};
use test_contract_kit as kit;

// The export glue that wit-bindgen generates is `unsafe`; it is confined here.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/deps/tessera-plugin-0.1.0",
        world: "query-handler",
    });

    use super::QueriesV1;
    export!(QueriesV1);
}

const PROJECTION: &str = "tally-totals-v1";

struct QueriesV1;

fn read(statement: &str) -> Result<Vec<Json>, Refusal> {
    let Rows { columns, rows } = query(PROJECTION, statement, &[]).map_err(|message| {
        Refusal::Rejected(Rejection {
            code: "read_failed".into(),
            message,
        })
    })?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let object: Map<String, Json> = columns
                .iter()
                .cloned()
                .zip(row.into_iter().map(|value| match value {
                    Value::Null => Json::Null,
                    Value::Integer(i) => json!(i),
                    Value::Real(r) => json!(r),
                    Value::Text(t) => json!(t),
                    Value::Blob(b) => json!(b),
                }))
                .collect();
            Json::Object(object)
        })
        .collect())
}

impl Guest for QueriesV1 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "tally-queries-v1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handles: vec!["v1-tallies".into()],
            details: PluginDetails::QueryHandler(QueryHandlerDetails {
                reads: vec![PROJECTION.into()],
            }),
        }
    }

    fn handle(name: String, _params: String) -> Result<String, Refusal> {
        if name != "v1-tallies" {
            return Err(Refusal::NotFound(format!("no query named {name}")));
        }
        let tallies = read(kit::TALLIES)?;
        let calls = read(kit::CALLS)?
            .first()
            .and_then(|row| row["calls"].as_i64())
            .unwrap_or(0);
        Ok(json!({ "tallies": tallies, "calls": calls }).to_string())
    }
}
