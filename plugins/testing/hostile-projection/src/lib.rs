//! Test plugin: a projection that tries every door out of its own read model.
//!
//! Its read model is honest (`seen`: one row per account opened), but it also tries
//! what a projection must never be able to do: reach another database file
//! (`ATTACH`, `VACUUM INTO`), change durability (`PRAGMA`), take over the host's batch
//! transaction (`BEGIN`, `COMMIT`, `ROLLBACK`, savepoints), or write, move, rig or
//! shadow the host's checkpoint table. Each attempt's outcome, `denied: <error>` or
//! `allowed`, goes into its own table `attempts(phase, what, outcome)`, which the
//! `test-hostile-query` handler exposes. Allowed attempts are undone where the guest
//! can undo them, so the report stays readable.
//!
//! When: the common attempts in `setup`, and in `apply` for an account whose owner is
//! an absolute path (with the attempts that need a real path: the owner is the only
//! way to hand a sandboxed guest one); the triggers on the host's table in `apply`
//! for an owner `rig`, the shadowing temporary objects for an owner `shadow`.

use serde::Deserialize;
use tessera_sdk::sql::Value;
use tessera_sdk::{Db, Envelope, Mode, Projection, params};

pub struct HostileProjection;

#[derive(Debug, Deserialize)]
pub enum Event {
    AccountOpened { owner: String },
}

/// One attempt: what it is called in the report, the statement, its parameters, and
/// how to undo it should it be allowed.
struct Attempt {
    what: String,
    sql: String,
    params: Vec<Value>,
    undo: Option<&'static str>,
    /// Run with `query` (a statement that returns rows) rather than `execute`.
    rows: bool,
}

impl Attempt {
    fn new(sql: impl Into<String>) -> Self {
        let sql = sql.into();
        Attempt {
            what: sql.clone(),
            sql,
            params: Vec::new(),
            undo: None,
            rows: false,
        }
    }

    fn named(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    fn with(mut self, params: &[Value]) -> Self {
        self.params = params.to_vec();
        self
    }

    fn undo(mut self, sql: &'static str) -> Self {
        self.undo = Some(sql);
        self
    }

    fn rows(mut self) -> Self {
        self.rows = true;
        self
    }
}

/// The attempts made in every phase.
fn attempts() -> Vec<Attempt> {
    vec![
        Attempt::new("ATTACH DATABASE ':memory:' AS other").undo("DETACH DATABASE other"),
        Attempt::new("ATTACH DATABASE 'x.db' AS other").undo("DETACH DATABASE other"),
        Attempt::new("PRAGMA journal_mode=DELETE").rows(),
        Attempt::new("PRAGMA synchronous=OFF"),
        Attempt::new("PRAGMA writable_schema=ON").undo("PRAGMA writable_schema=OFF"),
        Attempt::new("PRAGMA locking_mode=EXCLUSIVE").rows(),
        Attempt::new("BEGIN"),
        Attempt::new("COMMIT"),
        Attempt::new("ROLLBACK"),
        Attempt::new("SAVEPOINT hostile"),
        Attempt::new("RELEASE hostile"),
        Attempt::new("VACUUM"),
        Attempt::new("UPDATE _tessera_checkpoint SET position = 0"),
        Attempt::new("UPDATE _TESSERA_CHECKPOINT SET position = 0"),
        Attempt::new("UPDATE main._tessera_checkpoint SET setup = 0"),
        Attempt::new("INSERT INTO _tessera_checkpoint (id, position, setup) VALUES (2, 0, 0)"),
        Attempt::new(
            "INSERT OR REPLACE INTO _tessera_checkpoint (id, position, setup) VALUES (1, 0, 0)",
        ),
        Attempt::new("DELETE FROM _tessera_checkpoint"),
        Attempt::new("DROP TABLE _tessera_checkpoint"),
        Attempt::new("ALTER TABLE _tessera_checkpoint RENAME TO hijacked")
            .undo("ALTER TABLE hijacked RENAME TO _tessera_checkpoint"),
        Attempt::new("ALTER TABLE _tessera_checkpoint ADD COLUMN hostile INTEGER"),
        Attempt::new("CREATE TABLE _tessera_hostile (x INTEGER)")
            .undo("DROP TABLE _tessera_hostile"),
        Attempt::new("CREATE VIRTUAL TABLE hostile_vt USING fts5(x)").undo("DROP TABLE hostile_vt"),
        Attempt::new("SELECT load_extension('hostile')").rows(),
        // The trigger on the guest's own table is created in setup (allowed: it is the
        // guest's table); firing it must still not reach the host's table.
        Attempt::new("INSERT INTO bait (x) VALUES (1)")
            .named("INSERT firing a trigger that updates _tessera_checkpoint"),
    ]
}

/// Triggers on the host's checkpoint table. A trigger runs inside the statement that
/// fires it, and the host's own statements are not held to the guest rules: one
/// could rewind the checkpoint after every batch, so that a restart applies events
/// twice. The persistent one is left in place should it be allowed, to show it.
fn trigger_attempts() -> Vec<Attempt> {
    vec![
        Attempt::new(
            "CREATE TRIGGER hostile_rewind AFTER UPDATE ON _tessera_checkpoint \
             BEGIN UPDATE _tessera_checkpoint SET position = 0 WHERE id = 1; END",
        )
        .named("CREATE TRIGGER ON _tessera_checkpoint"),
        Attempt::new(
            "CREATE TEMP TRIGGER hostile_ignore BEFORE UPDATE ON main._tessera_checkpoint \
             BEGIN SELECT RAISE(IGNORE); END",
        )
        .named("CREATE TEMP TRIGGER ON _tessera_checkpoint")
        .undo("DROP TRIGGER temp.hostile_ignore"),
    ]
}

/// Temporary objects named like the host's table shadow it on this connection: the
/// host would read or write what the guest made up. They cannot be undone by the
/// guest (dropping one is a delete on the host's table name), so an allowed one
/// breaks the batch: the test then sees the projection fail.
fn shadow_attempts() -> Vec<Attempt> {
    vec![
        Attempt::new(
            "CREATE TEMP VIEW _tessera_checkpoint AS SELECT 1 AS id, 0 AS position, 1 AS setup",
        )
        .named("CREATE TEMP VIEW _tessera_checkpoint"),
        Attempt::new(
            "CREATE TEMP TABLE _tessera_checkpoint (id INTEGER, position INTEGER, setup INTEGER)",
        )
        .named("CREATE TEMP TABLE _tessera_checkpoint"),
    ]
}

/// The attempts that need a real path, handed over as an account's owner.
fn path_attempts(path: &str) -> Vec<Attempt> {
    let quoted = path.replace('\'', "''");
    vec![
        Attempt::new(format!("ATTACH DATABASE '{quoted}' AS other"))
            .named("ATTACH DATABASE '<path>'")
            .undo("DETACH DATABASE other"),
        Attempt::new("ATTACH DATABASE ?1 AS other")
            .named("ATTACH DATABASE ?1 (<path>)")
            .with(params![path])
            .undo("DETACH DATABASE other"),
        Attempt::new("ATTACH DATABASE ?1 AS other")
            .named("ATTACH DATABASE ?1 (<path>.hostile, a new file)")
            .with(params![format!("{path}.hostile")])
            .undo("DETACH DATABASE other"),
        // Only reachable if an ATTACH above was allowed (and not undone).
        Attempt::new("UPDATE other.accounts SET balance = balance + 1000000")
            .named("UPDATE other.accounts"),
        Attempt::new("VACUUM INTO ?1")
            .named("VACUUM INTO ?1 (<path>.copy)")
            .with(params![format!("{path}.copy")]),
    ]
}

fn record(db: &Db, phase: &str, what: &str, outcome: &str) -> Result<(), String> {
    db.execute(
        "INSERT INTO attempts (phase, what, outcome) VALUES (?1, ?2, ?3)",
        params![phase, what, outcome],
    )?;
    Ok(())
}

fn try_all(db: &Db, phase: &str, attempts: Vec<Attempt>) -> Result<(), String> {
    for attempt in attempts {
        let result = if attempt.rows {
            db.query(&attempt.sql, &attempt.params).map(|_| ())
        } else {
            db.execute(&attempt.sql, &attempt.params).map(|_| ())
        };
        let outcome = match result {
            Ok(()) => {
                if let Some(undo) = attempt.undo {
                    let _ = db.execute(undo, params![]);
                }
                "allowed".to_string()
            }
            Err(error) => format!("denied: {error}"),
        };
        record(db, phase, &attempt.what, &outcome)?;
    }
    Ok(())
}

impl Projection for HostileProjection {
    const SCHEMA_VERSION: u32 = 1;
    const MODE: Mode = Mode::Async;
    type Event = Event;

    fn setup(db: &Db) -> Result<(), String> {
        db.execute(
            "CREATE TABLE attempts (
                seq INTEGER PRIMARY KEY,
                phase TEXT NOT NULL,
                what TEXT NOT NULL,
                outcome TEXT NOT NULL
            )",
            params![],
        )?;
        db.execute(
            "CREATE TABLE seen (position INTEGER PRIMARY KEY, stream TEXT NOT NULL)",
            params![],
        )?;
        db.execute("CREATE TABLE bait (x INTEGER)", params![])?;
        db.execute(
            "CREATE TRIGGER bait_rewind AFTER INSERT ON bait
             BEGIN UPDATE _tessera_checkpoint SET position = 0 WHERE id = 1; END",
            params![],
        )?;
        try_all(db, "setup", attempts())
    }

    fn apply(db: &Db, envelope: Envelope<Event>) -> Result<(), String> {
        let Event::AccountOpened { owner } = envelope.event;
        db.execute(
            "INSERT INTO seen (position, stream) VALUES (?1, ?2)",
            params![envelope.position, &envelope.stream],
        )?;
        let phase = format!("apply {}", envelope.position);
        if owner.starts_with('/') {
            try_all(db, &phase, attempts())?;
            try_all(db, &phase, path_attempts(&owner))?;
        } else if owner == "rig" {
            try_all(db, &phase, trigger_attempts())?;
        } else if owner == "shadow" {
            try_all(db, &phase, shadow_attempts())?;
        }
        Ok(())
    }
}

tessera_sdk::projection!(HostileProjection);
