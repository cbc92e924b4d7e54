//! The read store's bounds, tried directly on real SQLite files: deadlines, the stop
//! flag, value sizes, the size bound, and the host's tables against any sequence of
//! guest statements.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::{Budget, Parked, ProjectionDb, ReadPool, ReadStoreError, SqlBounds, SqlValue};

const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

fn budget(within: Duration) -> Budget {
    Budget {
        deadline: Instant::now() + within,
        stop: Arc::new(AtomicBool::new(false)),
        abandoned: Arc::new(AtomicBool::new(false)),
    }
}

fn open(dir: &tempfile::TempDir, bounds: SqlBounds) -> ProjectionDb {
    ProjectionDb::open(&dir.path().join("v1.g1.db"), false, bounds).expect("open")
}

#[test]
fn an_endless_statement_ends_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(&dir, SqlBounds::default());
    db.begin().unwrap();
    let started = Instant::now();
    let result = db.query(ENDLESS, &[], &budget(Duration::from_millis(200)));
    assert!(
        matches!(result, Err(ReadStoreError::Interrupted)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The connection is still usable by the host afterwards.
    db.rollback();
    assert_eq!(db.state().unwrap(), (0, false));

    let pool = ReadPool::new(db.path());
    let started = Instant::now();
    let result = pool.query(ENDLESS, &[], &budget(Duration::from_millis(200)));
    assert!(
        matches!(result, Err(ReadStoreError::Interrupted)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The reader went back to the pool and answers the next query.
    let rows = pool
        .query("SELECT 1", &[], &budget(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(rows.rows, vec![vec![SqlValue::Integer(1)]]);
}

#[test]
fn the_stop_flag_ends_a_statement_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = {
        let db = open(&dir, SqlBounds::default());
        ReadPool::new(db.path())
    };
    let budget = budget(Duration::from_secs(3600));
    let stop = budget.stop.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = Instant::now();
    let result = pool.query(ENDLESS, &[], &budget);
    assert!(
        matches!(result, Err(ReadStoreError::Interrupted)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    stopper.join().unwrap();
    // Once stopped, nothing more runs.
    assert!(matches!(
        pool.query("SELECT 1", &[], &budget),
        Err(ReadStoreError::Interrupted)
    ));
}

#[test]
fn values_past_the_length_bound_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = SqlBounds {
        max_length: 1 << 20,
        ..SqlBounds::default()
    };
    let mut db = open(&dir, bounds);
    let pool = ReadPool::new(db.path());
    db.begin().unwrap();
    for statement in [
        "SELECT randomblob(2000000000)",
        "SELECT zeroblob(2000000000)",
        "SELECT length(zeroblob(2000000000))",
        "SELECT printf('%.*c', 1000000000, 'x')",
        "SELECT replace(printf('%.*c', 100000, 'x'), 'x', printf('%.*c', 100000, 'y'))",
        "SELECT group_concat(hex(randomblob(1000))) FROM \
         (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000) \
         SELECT x FROM c)",
    ] {
        let result = db.query(statement, &[], &budget(Duration::from_secs(10)));
        assert!(result.is_err(), "{statement} was allowed");
        let result = pool.query(statement, &[], &budget(Duration::from_secs(10)));
        assert!(result.is_err(), "{statement} was allowed to a query");
    }
    db.rollback();
}

#[test]
fn a_database_stops_growing_at_its_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = SqlBounds {
        max_bytes: 2 << 20,
        ..SqlBounds::default()
    };
    let mut db = open(&dir, bounds);
    db.begin().unwrap();
    db.execute(
        "CREATE TABLE fill (x BLOB)",
        &[],
        &budget(Duration::from_secs(5)),
    )
    .unwrap();
    db.commit(1, true).unwrap();
    let mut failure = None;
    for _ in 0..1000 {
        db.begin().unwrap();
        let inserted = db.execute(
            "INSERT INTO fill SELECT randomblob(4000) FROM generate_series(1, 100)",
            &[],
            &budget(Duration::from_secs(5)),
        );
        let inserted = match inserted {
            // generate_series is an extension the bundled SQLite may lack.
            Err(ReadStoreError::Sql(_)) => db.execute(
                "INSERT INTO fill WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 \
                 FROM c LIMIT 100) SELECT randomblob(4000) FROM c",
                &[],
                &budget(Duration::from_secs(5)),
            ),
            other => other,
        };
        match inserted.and_then(|_| db.commit(2, true)) {
            Ok(()) => {}
            Err(error) => {
                db.rollback();
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("the database never reached its bound");
    assert!(
        matches!(failure, ReadStoreError::SizeBound { bound } if bound == 2 << 20),
        "{failure:?}"
    );
    assert!(failure.to_string().contains("size bound"), "{failure}");
    let size = std::fs::metadata(db.path()).unwrap().len();
    assert!(size <= 2 << 20, "the database has {size} bytes");
    // The host still reads and commits its checkpoint.
    db.begin().unwrap();
    db.commit(3, true).unwrap();
    assert_eq!(db.state().unwrap(), (3, true));
}

/// Statements a hostile projection might try against the host's tables: shadowing
/// them from `temp`, renaming onto them, triggers and views, writes, schema tricks.
const TRICKS: &[&str] = &[
    "CREATE TABLE t (x)",
    "INSERT INTO t VALUES (1)",
    "DELETE FROM t",
    "CREATE TEMP TABLE t (x)",
    "CREATE TABLE temp.t2 (x)",
    "CREATE TEMP TABLE _tessera_checkpoint (id, position, setup)",
    "CREATE TEMP TABLE _tessera_parked (position, event_type, error, parked_at)",
    "ALTER TABLE t RENAME TO _tessera_checkpoint",
    "ALTER TABLE temp.t RENAME TO _tessera_checkpoint",
    "ALTER TABLE t RENAME TO _tessera_parked",
    "ALTER TABLE _tessera_checkpoint RENAME TO hijacked",
    "ALTER TABLE _tessera_checkpoint ADD COLUMN evil",
    "CREATE TEMP VIEW _tessera_checkpoint AS SELECT 1 AS id, 99 AS position, 1 AS setup",
    "CREATE VIEW _tessera_parked AS SELECT 1",
    "CREATE VIEW v AS SELECT * FROM _tessera_checkpoint",
    "CREATE TRIGGER tv INSTEAD OF UPDATE ON v BEGIN UPDATE _tessera_checkpoint SET position = 0; END",
    "UPDATE v SET position = 0",
    "CREATE TEMP TRIGGER tt AFTER UPDATE ON main._tessera_checkpoint BEGIN UPDATE main._tessera_checkpoint SET position = 0; END",
    "CREATE TRIGGER tc AFTER UPDATE ON _tessera_checkpoint BEGIN DELETE FROM _tessera_parked; END",
    "CREATE TRIGGER ti AFTER INSERT ON t BEGIN UPDATE _tessera_checkpoint SET position = 0; END",
    "CREATE TRIGGER td BEFORE DELETE ON t BEGIN INSERT INTO _tessera_parked VALUES (7, 'a', 'b', 'c'); END",
    "UPDATE _tessera_checkpoint SET position = 0",
    "UPDATE main._tessera_checkpoint SET setup = 0",
    "REPLACE INTO _tessera_checkpoint VALUES (1, 0, 0)",
    "WITH x AS (SELECT 1) UPDATE _tessera_checkpoint SET position = 1",
    "DELETE FROM _tessera_parked",
    "INSERT INTO _tessera_parked VALUES (1, 'x', 'y', 'z')",
    "DROP TABLE _tessera_checkpoint",
    "DROP TABLE t",
    "CREATE INDEX ix ON _tessera_checkpoint (position)",
    "CREATE TABLE \"_TESSERA_CHECKPOINT2\" (x)",
    "CREATE TABLE copy AS SELECT * FROM _tessera_checkpoint",
    "INSERT INTO t SELECT position FROM _tessera_checkpoint",
    "PRAGMA writable_schema = 1",
    "PRAGMA temp_store = FILE",
    "PRAGMA max_page_count = 1000000000",
    "ATTACH ':memory:' AS other",
    "SAVEPOINT s",
    "RELEASE s",
    "COMMIT",
    "BEGIN",
    "ROLLBACK",
    "VACUUM",
    "CREATE VIRTUAL TABLE vt USING fts5(x)",
    "DROP VIEW v",
    "DROP TRIGGER ti",
];

/// The host's own statements, sent by a guest word for word, are refused: the
/// statement cache is the guest's alone, so nothing the host prepared with its rights
/// can be handed to a guest.
#[test]
fn the_hosts_own_statements_are_refused_to_a_guest() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(&dir, SqlBounds::default());
    db.begin().unwrap();
    db.commit(5, true).unwrap();
    db.begin().unwrap();
    let budget = budget(Duration::from_secs(5));
    let int = SqlValue::Integer;
    for (statement, params) in [
        (include_str!("update_checkpoint.sql"), vec![int(0), int(0)]),
        (include_str!("delete_parked.sql"), vec![int(1)]),
        (
            include_str!("insert_parked.sql"),
            vec![
                int(1),
                SqlValue::Text("x".into()),
                SqlValue::Text("y".into()),
                SqlValue::Text("z".into()),
            ],
        ),
        ("COMMIT", vec![]),
        ("ROLLBACK", vec![]),
        ("BEGIN IMMEDIATE", vec![]),
    ] {
        let outcome = db.execute(statement, &params, &budget);
        assert!(outcome.is_err(), "{statement} was allowed to a guest");
        assert!(db.lost().is_none(), "{statement} ended the batch");
    }
    db.commit(6, true).unwrap();
    assert_eq!(db.state().unwrap(), (6, true));
    assert!(db.parked().unwrap().is_empty());
}

/// Runs random sequences of [`TRICKS`] as guest statements between the host's own
/// commits, reopening the database now and then as a restart would, and checks that
/// the host always reads back exactly what it wrote.
#[test]
fn no_sequence_of_guest_statements_reaches_the_hosts_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x7e55e7a);
    let mut db = open(&dir, SqlBounds::default());
    let mut position = 0u64;
    let mut parked: Vec<u64> = Vec::new();
    for round in 0..400 {
        db.begin().unwrap();
        for _ in 0..rng.usize(1..6) {
            let statement = TRICKS[rng.usize(..TRICKS.len())];
            // Whatever the guest's statement does, allowed or not, is its own affair.
            let outcome = db.execute(statement, &[], &budget(Duration::from_secs(5)));
            assert!(
                db.lost().is_none(),
                "{statement} ended the batch's transaction: {outcome:?}"
            );
        }
        position += 1;
        if rng.u8(..4) == 0 {
            db.park(&Parked {
                position,
                event_type: "Poison".into(),
                error: "failed".into(),
                parked_at: "now".into(),
            })
            .unwrap();
            parked.push(position);
        }
        if rng.u8(..8) == 0
            && let Some(at) = parked.pop()
        {
            assert!(db.unpark(at).unwrap());
        }
        db.commit(position, true).unwrap();
        assert_eq!(db.state().unwrap(), (position, true), "round {round}");
        let held: Vec<u64> = db.parked().unwrap().iter().map(|p| p.position).collect();
        assert_eq!(held, parked, "round {round}");
        if rng.u8(..16) == 0 {
            db = open(&dir, SqlBounds::default());
            assert_eq!(db.state().unwrap(), (position, true), "after reopening");
        }
    }
    // A fresh reader sees what the host wrote, and the guest made nothing in `temp`.
    let pool = ReadPool::new(db.path());
    let held: Vec<u64> = pool.parked().unwrap().iter().map(|p| p.position).collect();
    assert_eq!(held, parked);
    let temp = db
        .query(
            "SELECT count(*) FROM temp.sqlite_schema",
            &[],
            &budget(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(temp.rows, vec![vec![SqlValue::Integer(0)]]);
}
