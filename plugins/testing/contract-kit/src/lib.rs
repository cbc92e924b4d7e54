//! What the `test-contract-*` plugins share: the tally's rules and SQL, written once,
//! so that a plugin of contract 0.1.0 and one of 0.2.0 must give the same answers and
//! only the way the host calls them differs.
//!
//! The tally: `add {amount}` and `add-many {amounts}` add amounts (each 1..=1000) to a
//! stream's total, which may not pass 10,000; `probe {}` appends a `Probed` event that
//! reports the state, including how many guest calls folded it. The tally projections
//! record each stream's total and event count from `Added` events, and how many guest
//! calls applied them; they fail on an amount of 13.

use serde_json::{Value, json};

/// The largest amount one `Added` may carry.
pub const MAX_AMOUNT: u64 = 1000;
/// The most a stream's total may reach.
pub const LIMIT: u64 = 10_000;
/// The amount the tally projections cannot apply: they return an error naming it.
pub const UNLUCKY: u64 = 13;
/// The amount on which the tally projections trap (panic), so that they cannot say
/// which event failed.
pub const TRAP: u64 = 666;

/// Why a command is refused.
#[derive(Debug)]
pub enum Refused {
    Invalid { field: String, message: String },
    Rejected { code: String, message: String },
}

/// The state of a tally stream: its total, the events folded into it, and the guest
/// calls that folded them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    pub events: u64,
    pub calls: u64,
}

impl Tally {
    pub fn from_json(state: Option<&str>) -> Tally {
        let Some(state) = state else {
            return Tally::default();
        };
        let value: Value = serde_json::from_str(state).expect("a tally state is JSON");
        let field = |name: &str| value[name].as_u64().expect("a tally state field");
        Tally {
            total: field("total"),
            events: field("events"),
            calls: field("calls"),
        }
    }

    pub fn to_json(self) -> String {
        json!({ "total": self.total, "events": self.events, "calls": self.calls }).to_string()
    }

    /// Folds one event (by type and JSON data).
    pub fn apply(&mut self, event_type: &str, data: &str) {
        self.events += 1;
        if event_type == "Added" {
            let data: Value = serde_json::from_str(data).expect("Added carries JSON");
            self.total += data["amount"].as_u64().expect("Added has an amount");
        }
    }

    /// Decides `command` (its name without the version prefix) with `payload`: the
    /// events to append, as (type, JSON data).
    pub fn decide(&self, command: &str, payload: &str) -> Result<Vec<(String, String)>, Refused> {
        let payload: Value = serde_json::from_str(payload).map_err(|e| Refused::Invalid {
            field: "payload".into(),
            message: format!("not JSON: {e}"),
        })?;
        let amounts = match command {
            "add" => vec![amount(&payload["amount"], "amount")?],
            "add-many" => {
                let list = payload["amounts"]
                    .as_array()
                    .ok_or_else(|| Refused::Invalid {
                        field: "amounts".into(),
                        message: "a list of amounts is required".into(),
                    })?;
                list.iter()
                    .enumerate()
                    .map(|(i, a)| amount(a, &format!("amounts.{i}")))
                    .collect::<Result<Vec<_>, _>>()?
            }
            "probe" => {
                let data = json!({
                    "total": self.total,
                    "events": self.events,
                    "calls": self.calls,
                });
                return Ok(vec![("Probed".into(), data.to_string())]);
            }
            other => {
                return Err(Refused::Invalid {
                    field: "command".into(),
                    message: format!("unknown command {other}"),
                });
            }
        };
        let sum: u64 = amounts.iter().sum();
        if self.total + sum > LIMIT {
            return Err(Refused::Rejected {
                code: "limit".into(),
                message: format!("the total would pass {LIMIT}"),
            });
        }
        Ok(amounts
            .into_iter()
            .map(|amount| ("Added".into(), json!({ "amount": amount }).to_string()))
            .collect())
    }
}

fn amount(value: &Value, field: &str) -> Result<u64, Refused> {
    match value.as_u64() {
        Some(amount) if (1..=MAX_AMOUNT).contains(&amount) => Ok(amount),
        _ => Err(Refused::Invalid {
            field: field.into(),
            message: format!("must be a whole number in 1..={MAX_AMOUNT}"),
        }),
    }
}

/// The tally projections' tables.
pub const SETUP: [&str; 2] = [
    "CREATE TABLE tallies (
        stream TEXT PRIMARY KEY,
        total INTEGER NOT NULL,
        events INTEGER NOT NULL,
        last_position INTEGER NOT NULL
    )",
    "CREATE TABLE calls (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
];

/// Records an `Added` event: `?1` stream, `?2` amount, `?3` position.
pub const RECORD: &str = "INSERT INTO tallies (stream, total, events, last_position)
    VALUES (?1, ?2, 1, ?3)
    ON CONFLICT (stream) DO UPDATE SET
        total = total + excluded.total,
        events = events + 1,
        last_position = excluded.last_position";

/// Counts one guest call that applied events.
pub const COUNT_CALL: &str = "INSERT INTO calls (id, n) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET n = n + 1";

/// The amount of an `Added` event (its JSON data), or why the tally projections
/// cannot apply it.
pub fn projected_amount(position: u64, data: &str) -> Result<u64, String> {
    let data: Value =
        serde_json::from_str(data).map_err(|e| format!("event {position}: not JSON: {e}"))?;
    let amount = data["amount"]
        .as_u64()
        .ok_or_else(|| format!("event {position} has no amount"))?;
    check_amount(position, amount)
}

/// `amount`, unless the tally projections cannot apply it.
pub fn check_amount(position: u64, amount: u64) -> Result<u64, String> {
    if amount == TRAP {
        panic!("event {position}: the amount {TRAP} traps");
    }
    if amount == UNLUCKY {
        return Err(format!(
            "cannot apply event {position}: the amount {UNLUCKY} is unlucky"
        ));
    }
    Ok(amount)
}

/// The tally queries' statements: every stream, and the calls counted.
pub const TALLIES: &str = "SELECT stream, total, events FROM tallies ORDER BY stream";
pub const CALLS: &str = "SELECT COALESCE((SELECT n FROM calls WHERE id = 1), 0) AS calls";
