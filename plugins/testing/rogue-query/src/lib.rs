//! Test plugin: a query handler with one query per misbehaviour, and `ping`, which
//! behaves. It declares that it reads `account-balance` (the bank's projection), so a
//! host serving the bank can route its queries.
//!
//! - `spin`: loops forever; `spin-for` (`ms`): busy-waits and answers.
//! - `grow`: grows memory without end; `panic`: traps.
//! - `huge` (`mb`): answers a JSON string of `mb` MiB; `bad-json`: answers text that
//!   is not JSON.
//! - `probe` (`ports`, comma-separated): tries files, environment and network and
//!   answers what each attempt got.
//! - `count` (any `n`, to make each request its own cache key): answers how many
//!   `count` queries the instance it runs in has answered, this one included, from a
//!   global: 1 means a fresh instance (the instance-reuse tests read it).

use serde_json::Value;
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    PluginInfo, Refusal as WitRefusal,
};
use tessera_sdk::__bindings::query::exports::tessera::plugin0_2_0::querier::Guest;
use tessera_sdk::__private::query::{describe, handle};
use tessera_sdk::{Json, Params, QueryHandler, Refusal, json};
use test_rogue_kit as kit;

pub struct RogueQuery;

impl QueryHandler for RogueQuery {
    const READS: &'static [&'static str] = &["account-balance"];
    const QUERIES: &'static [&'static str] = &[
        "rogue-ping",
        "rogue-spin",
        "rogue-spin-for",
        "rogue-grow",
        "rogue-panic",
        "rogue-huge",
        "rogue-bad-json",
        "rogue-probe",
        "rogue-count",
    ];

    fn handle(name: &str, params: Params) -> Result<Json, Refusal> {
        match name {
            "rogue-ping" => Ok(json!({ "pong": true })),
            "rogue-spin" => kit::spin_forever(),
            "rogue-spin-for" => {
                let ms: u64 = params.require("ms")?;
                Ok(json!({ "turns": kit::spin_for(ms) }))
            }
            "rogue-grow" => kit::grow_forever(),
            "rogue-panic" => panic!("the rogue query panics on request"),
            "rogue-probe" => {
                let ports: String = params.get("ports")?.unwrap_or_default();
                let ports: Vec<u16> = ports.split(',').filter_map(|p| p.parse().ok()).collect();
                Ok(kit::probe(&ports))
            }
            "rogue-count" => Ok(json!({ "calls": kit::count_call() })),
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

struct Exports;

impl Guest for Exports {
    fn describe() -> PluginInfo {
        describe::<RogueQuery>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn handle(name: String, params: String) -> Result<String, WitRefusal> {
        match name.as_str() {
            "rogue-huge" => {
                let params: Value = serde_json::from_str(&params).unwrap_or(Value::Null);
                let mb = params["mb"]
                    .as_str()
                    .and_then(|mb| mb.parse::<usize>().ok())
                    .or_else(|| params["mb"].as_u64().map(|mb| mb as usize))
                    .unwrap_or(1);
                Ok(kit::huge_json_string(mb << 20))
            }
            "rogue-bad-json" => Ok("<html>not json</html>".to_string()),
            _ => handle::<RogueQuery>(name, params),
        }
    }
}

tessera_sdk::__bindings::query::export_query_handler!(Exports);
