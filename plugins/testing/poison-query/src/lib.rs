//! Test plugin: a query handler reading the `poison` projection.
//!
//! - `owners`: every owner recorded, in log order, with the position of its event.

use tessera_sdk::{Json, Params, QueryHandler, Refusal, params, read};

pub struct PoisonQueries;

impl QueryHandler for PoisonQueries {
    const READS: &'static [&'static str] = &["poison"];
    const QUERIES: &'static [&'static str] = &["poison-owners"];

    fn handle(name: &str, _params: Params) -> Result<Json, Refusal> {
        match name {
            "poison-owners" => {
                let rows = read(
                    "poison",
                    "SELECT position, stream, owner FROM owners ORDER BY position",
                    params![],
                )?;
                Ok(Json::Array(rows.to_json()))
            }
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

tessera_sdk::query_handler!(PoisonQueries, name = "poison-query");
