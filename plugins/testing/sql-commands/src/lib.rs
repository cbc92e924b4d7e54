//! Test plugin: a command handler (aggregate type `sql`) that appends whatever the
//! tests need for the `test-sql-*` projections, and whose outputs misbehave on
//! request. Its state is a JSON object counting the events folded.
//!
//! - `sql-ping`: one `Pinged` event; behaves, so a test can show the plugin serves.
//! - `sql-emit {type, data?, count?}`: `count` (default 1) events of type `type` with
//!   data `data` (default `{}`), as given: the way to feed the SQL projections
//!   (`SqlNote`, `SqlSpin`, `FillDisk`, `InlineSpin`...) and to hand the host event
//!   types it must refuse (newlines, NUL, escapes, too long).
//! - `sql-deep-data {depth}`: one `Deep` event whose data is nested `depth` deep.
//! - `sql-fatten {mb}`: one `Fattened` event; folding it makes the state `mb` MiB.
//! - `sql-spoil-state`: one `Spoiled` event; folding it returns a state that is not
//!   JSON.
//! - `sql-deepen-state {depth}`: one `Deepened` event; folding it returns a state
//!   nested `depth` deep.
//! - `sql-flood {mb, via}`: writes `mb` MiB through `via` (`log`, `stdout`, `stderr`
//!   or `all`) while deciding, then appends `Flooded`.
//!
//! Handled by hand rather than through the SDK's `Aggregate`, so that the outputs can
//! be anything at all; the state is never trusted (a state that does not parse is
//! taken as a fresh one), so that a host that hands a broken state back is seen to
//! do so, rather than hidden behind a trap in this plugin.

use std::io::Write;

use serde_json::{Map, Value, json};
use tessera_sdk::__bindings::command::exports::tessera::plugin0_2_0::aggregate::{
    Command as WitCommand, Guest, NewEvent,
};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::log::{Level, log};
use tessera_sdk::__bindings::command::tessera::plugin0_2_0::types::{
    CommandHandlerDetails, Event as WitEvent, FieldError, PluginDetails, PluginInfo,
    Refusal as WitRefusal,
};
use test_sql_kit::nested_json;

const COMMANDS: &[&str] = &[
    "sql-ping",
    "sql-emit",
    "sql-deep-data",
    "sql-fatten",
    "sql-spoil-state",
    "sql-deepen-state",
    "sql-flood",
];

/// The most events one `sql-emit` appends.
const MAX_COUNT: u64 = 100_000;

struct Exports;

fn invalid(field: &str, message: impl Into<String>) -> WitRefusal {
    WitRefusal::Invalid(vec![FieldError {
        field: field.to_string(),
        message: message.into(),
    }])
}

fn event(event_type: &str, data: String) -> NewEvent {
    NewEvent {
        event_type: event_type.to_string(),
        data,
    }
}

fn number(payload: &Map<String, Value>, field: &str) -> Result<u64, WitRefusal> {
    payload
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(field, "a whole number is required"))
}

/// How many events a state says it has folded; a state that does not parse counts
/// as a fresh one.
fn folded(state: Option<&str>) -> u64 {
    state
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["events"].as_u64())
        .unwrap_or(0)
}

/// Writes `mb` MiB of numbered lines of about 1 KiB through `via`.
fn flood(mb: u64, via: &str) {
    let filler = "f".repeat(1000);
    let lines = mb * 1024;
    let (to_log, to_stdout, to_stderr) = match via {
        "log" => (true, false, false),
        "stdout" => (false, true, false),
        "stderr" => (false, false, true),
        _ => (true, true, true),
    };
    if to_log {
        // One line far over any per-line bound first.
        log(Level::Error, &"L".repeat(4 << 20));
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    for n in 0..lines {
        let line = format!("flood line {n} {filler}");
        if to_log {
            log(Level::Error, &line);
        }
        if to_stdout {
            let _ = writeln!(stdout, "{line}");
        }
        if to_stderr {
            let _ = writeln!(stderr, "{line}");
        }
    }
    let _ = stdout.flush();
    let _ = stderr.flush();
}

/// Folds one event: the state after it.
fn apply(state: Option<String>, event: WitEvent) -> String {
    let events = folded(state.as_deref()) + 1;
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    match event.event_type.as_str() {
        "Spoiled" => "this state is not JSON {".to_string(),
        "Deepened" => {
            let depth = data["depth"].as_u64().unwrap_or(1000) as usize;
            format!("{{\"events\":{events},\"deep\":{}}}", nested_json(depth))
        }
        "Fattened" => {
            let bytes = (data["mb"].as_u64().unwrap_or(1) as usize) << 20;
            let mut text = format!("{{\"events\":{events},\"fat\":\"");
            text.reserve(bytes + 2);
            text.extend(std::iter::repeat_n('x', bytes));
            text.push_str("\"}");
            text
        }
        _ => json!({ "events": events }).to_string(),
    }
}

impl Guest for Exports {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            handles: COMMANDS.iter().map(|c| c.to_string()).collect(),
            details: PluginDetails::CommandHandler(CommandHandlerDetails {
                aggregate_type: "sql".to_string(),
            }),
        }
    }

    fn fold(state: Option<String>, events: Vec<WitEvent>) -> String {
        let mut state = state;
        for event in events {
            state = Some(apply(state, event));
        }
        state.unwrap_or_else(|| json!({ "events": 0 }).to_string())
    }

    fn handle(state: Option<String>, command: WitCommand) -> Result<Vec<NewEvent>, WitRefusal> {
        let payload: Map<String, Value> = match serde_json::from_str(&command.payload) {
            Ok(Value::Object(map)) => map,
            _ => return Err(invalid("payload", "must be a JSON object")),
        };
        let events = folded(state.as_deref());
        match command.name.as_str() {
            "sql-ping" => Ok(vec![event(
                "Pinged",
                json!({ "folded": events }).to_string(),
            )]),
            "sql-emit" => {
                let event_type = payload
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("type", "a string is required"))?;
                let data = payload
                    .get("data")
                    .cloned()
                    .unwrap_or_else(|| json!({}))
                    .to_string();
                let count = payload.get("count").and_then(Value::as_u64).unwrap_or(1);
                if count == 0 || count > MAX_COUNT {
                    return Err(invalid("count", format!("must be 1..={MAX_COUNT}")));
                }
                Ok((0..count)
                    .map(|_| event(event_type, data.clone()))
                    .collect())
            }
            "sql-deep-data" => {
                let depth = number(&payload, "depth")? as usize;
                Ok(vec![event("Deep", nested_json(depth))])
            }
            "sql-fatten" => {
                let mb = number(&payload, "mb")?;
                Ok(vec![event("Fattened", json!({ "mb": mb }).to_string())])
            }
            "sql-spoil-state" => Ok(vec![event("Spoiled", "{}".to_string())]),
            "sql-deepen-state" => {
                let depth = number(&payload, "depth")?;
                Ok(vec![event(
                    "Deepened",
                    json!({ "depth": depth }).to_string(),
                )])
            }
            "sql-flood" => {
                let mb = number(&payload, "mb")?;
                let via = payload.get("via").and_then(Value::as_str).unwrap_or("all");
                flood(mb, via);
                Ok(vec![event("Flooded", json!({ "mb": mb }).to_string())])
            }
            other => Err(invalid("command", format!("unknown command {other}"))),
        }
    }
}

tessera_sdk::__bindings::command::export_command_handler!(Exports);
