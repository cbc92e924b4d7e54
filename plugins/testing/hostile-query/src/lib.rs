//! Test plugin: a query handler over `test-hostile-projection` that reports what that
//! projection managed to do, and tries to write through its own read-only access.
//!
//! - `attempts`: the projection's `attempts` table (`phase`, `what`, `outcome`).
//! - `seen`: how many accounts the projection has seen opened, and the last position.
//! - `write` (optional `path`, `copy_to`): tries, through `tessera_sdk::read`, every
//!   statement a query must not run (writes, schema changes, `ATTACH`, `PRAGMA`,
//!   transactions, `VACUUM INTO`) and a read of a projection it did not declare;
//!   answers each attempt's outcome, `denied: <error>` or `allowed`.

use tessera_sdk::sql::Value;
use tessera_sdk::{Json, Params, QueryHandler, Refusal, json, params, read};

pub struct HostileQuery;

const PROJECTION: &str = "test-hostile-projection";

impl QueryHandler for HostileQuery {
    const READS: &'static [&'static str] = &[PROJECTION];
    const QUERIES: &'static [&'static str] = &["attempts", "seen", "write"];

    fn handle(name: &str, params: Params) -> Result<Json, Refusal> {
        match name {
            "attempts" => {
                let rows = read(
                    PROJECTION,
                    "SELECT phase, what, outcome FROM attempts ORDER BY seq",
                    params![],
                )?;
                Ok(json!({ "attempts": rows.to_json() }))
            }
            "seen" => {
                let rows = read(
                    PROJECTION,
                    "SELECT COUNT(*) AS count, COALESCE(MAX(position), 0) AS last FROM seen",
                    params![],
                )?;
                Ok(rows.to_json().into_iter().next().unwrap_or(Json::Null))
            }
            "write" => write(&params),
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

fn write(params: &Params) -> Result<Json, Refusal> {
    let path: Option<String> = params.get("path")?;
    let copy_to: Option<String> = params.get("copy_to")?;
    let mut attempts: Vec<(String, &str, Vec<Value>)> = [
        "INSERT INTO attempts (phase, what, outcome) VALUES ('query', 'forged', 'allowed')",
        "UPDATE attempts SET outcome = 'allowed'",
        "DELETE FROM attempts",
        "DROP TABLE attempts",
        "CREATE TABLE hostile (x INTEGER)",
        "CREATE TEMP TABLE hostile (x INTEGER)",
        "CREATE INDEX hostile_index ON attempts (what)",
        "ALTER TABLE attempts RENAME TO hijacked",
        "UPDATE _tessera_checkpoint SET position = 0",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA query_only=0",
        "PRAGMA journal_mode=DELETE",
        "BEGIN",
        "BEGIN IMMEDIATE",
        "SAVEPOINT hostile",
        "VACUUM",
        "SELECT load_extension('hostile')",
        "SELECT 1; DELETE FROM attempts",
        "WITH doomed AS (SELECT 1) DELETE FROM attempts",
    ]
    .into_iter()
    .map(|sql| (sql.to_string(), PROJECTION, Vec::new()))
    .collect();
    if let Some(path) = path {
        attempts.push((
            "ATTACH DATABASE ?1 AS other".to_string(),
            PROJECTION,
            vec![Value::Text(path)],
        ));
    }
    if let Some(copy_to) = copy_to {
        attempts.push((
            "VACUUM INTO ?1".to_string(),
            PROJECTION,
            vec![Value::Text(copy_to)],
        ));
    }
    // Reading is allowed, but only from the projections the handler declared.
    attempts.push((
        "SELECT COUNT(*) FROM accounts".to_string(),
        "account-balance",
        Vec::new(),
    ));
    let report: Vec<Json> = attempts
        .into_iter()
        .map(|(sql, projection, params)| {
            let outcome = match read(projection, &sql, &params) {
                Ok(_) => "allowed".to_string(),
                Err(Refusal::Rejected { message, .. }) => format!("denied: {message}"),
                Err(other) => format!("denied: {other:?}"),
            };
            json!({ "projection": projection, "what": sql, "outcome": outcome })
        })
        .collect();
    Ok(json!({ "attempts": report }))
}

tessera_sdk::query_handler!(HostileQuery);
