//! The hostile SQL shared by the `test-sql-*` plugins. Each statement is harmless to
//! the guest that sends it (the guest only waits for the answer): the work happens in
//! SQLite, in host code, where the Wasm deadline and memory bound do not reach. What
//! the host must do about each (interrupt it at the call's deadline, refuse values
//! over its length limit, fail allocations past its heap limit, stop a database at
//! its size bound, deny the `temp` schema) is what `tests/sql_sandbox.rs` checks.

/// A statement that never ends: a recursive CTE without a bound, counted.
pub const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c";

/// A statement that ends, after counting to `?1`: with `?1` in the hundreds of
/// millions, many seconds of SQLite work.
pub const SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
     SELECT count(*) AS n FROM c";

/// How far [`SLOW`] counts unless told otherwise: tens of seconds of work on any
/// machine, far past any deadline the tests set.
pub const SLOW_DEFAULT: i64 = 400_000_000;

/// The memory-hungry statements, by name. Each asks SQLite for far more than a
/// plugin's 64 MiB instance bound (about 900 MB each, below SQLite's built-in
/// 1,000,000,000-byte length limit, so that only the host's own limits stop them).
pub const MEMORY: &[(&str, &str)] = &[
    // One 900 MB blob.
    ("randomblob", "SELECT length(randomblob(900000000)) AS n"),
    // The contract's own example: 2 GB, past every length limit.
    (
        "randomblob-2g",
        "SELECT length(randomblob(2000000000)) AS n",
    ),
    // A zero blob is lazy; concatenation makes SQLite materialise it.
    (
        "zeroblob",
        "SELECT length(zeroblob(900000000) || x'00') AS n",
    ),
    // A 900 MB string from a format.
    (
        "printf",
        "SELECT length(printf('%.*c', 900000000, 'x')) AS n",
    ),
    // 10 MB made 90 times larger by a replacement.
    (
        "replace",
        "SELECT length(replace(printf('%.*c', 10000000, 'x'), 'x', printf('%.*c', 90, 'y'))) AS n",
    ),
    // A string grown by aggregation, a little at a time.
    (
        "group-concat",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
         SELECT length(group_concat(printf('%.*c', 1000, 'x'), '')) AS n FROM c",
    ),
    // One row of 60 columns of 15 MB each: every value within a 16 MiB length limit,
    // 900 MB in all.
    ("columns", WIDE_ROW),
    // 60 rows of one 15 MB column: 900 MB of result, one row at a time.
    (
        "rows",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60) \
         SELECT randomblob(15000000) AS b FROM c",
    ),
    // A sort of a million 1 KB keys that keeps them all (1 GB of sorter).
    (
        "sort",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
         SELECT x FROM c ORDER BY randomblob(1000) LIMIT 1 OFFSET 999999",
    ),
];

/// `SELECT randomblob(15000000) AS c1, ... AS c60`.
const WIDE_ROW: &str = concat!(
    "SELECT randomblob(15000000) AS c1, randomblob(15000000) AS c2, randomblob(15000000) AS c3, ",
    "randomblob(15000000) AS c4, randomblob(15000000) AS c5, randomblob(15000000) AS c6, ",
    "randomblob(15000000) AS c7, randomblob(15000000) AS c8, randomblob(15000000) AS c9, ",
    "randomblob(15000000) AS c10, randomblob(15000000) AS c11, randomblob(15000000) AS c12, ",
    "randomblob(15000000) AS c13, randomblob(15000000) AS c14, randomblob(15000000) AS c15, ",
    "randomblob(15000000) AS c16, randomblob(15000000) AS c17, randomblob(15000000) AS c18, ",
    "randomblob(15000000) AS c19, randomblob(15000000) AS c20, randomblob(15000000) AS c21, ",
    "randomblob(15000000) AS c22, randomblob(15000000) AS c23, randomblob(15000000) AS c24, ",
    "randomblob(15000000) AS c25, randomblob(15000000) AS c26, randomblob(15000000) AS c27, ",
    "randomblob(15000000) AS c28, randomblob(15000000) AS c29, randomblob(15000000) AS c30, ",
    "randomblob(15000000) AS c31, randomblob(15000000) AS c32, randomblob(15000000) AS c33, ",
    "randomblob(15000000) AS c34, randomblob(15000000) AS c35, randomblob(15000000) AS c36, ",
    "randomblob(15000000) AS c37, randomblob(15000000) AS c38, randomblob(15000000) AS c39, ",
    "randomblob(15000000) AS c40, randomblob(15000000) AS c41, randomblob(15000000) AS c42, ",
    "randomblob(15000000) AS c43, randomblob(15000000) AS c44, randomblob(15000000) AS c45, ",
    "randomblob(15000000) AS c46, randomblob(15000000) AS c47, randomblob(15000000) AS c48, ",
    "randomblob(15000000) AS c49, randomblob(15000000) AS c50, randomblob(15000000) AS c51, ",
    "randomblob(15000000) AS c52, randomblob(15000000) AS c53, randomblob(15000000) AS c54, ",
    "randomblob(15000000) AS c55, randomblob(15000000) AS c56, randomblob(15000000) AS c57, ",
    "randomblob(15000000) AS c58, randomblob(15000000) AS c59, randomblob(15000000) AS c60",
);

/// The memory-hungry statement named `what`.
pub fn memory(what: &str) -> Option<&'static str> {
    MEMORY
        .iter()
        .find(|(name, _)| *name == what)
        .map(|(_, sql)| *sql)
}

/// One mebibyte of random bytes into the projection's `filler` table.
pub const FILL_ONE_MIB: &str = "INSERT INTO filler (data) VALUES (randomblob(1048576))";

/// Statements that try to create something in the `temp` schema, where the host's
/// unqualified statements would find it before the real table: shadows of the host's
/// tables, a table renamed into one, triggers on them, and temporary objects of every
/// kind. Each must be denied. The statements that need an object created by an
/// earlier one still run if that one was denied: they then fail on their own.
pub const TEMP_TRICKS: &[&str] = &[
    "CREATE TEMP TABLE t (x)",
    "CREATE TEMPORARY TABLE t2 (x)",
    "CREATE TABLE temp.t3 (x)",
    "CREATE TEMP TABLE t4 AS SELECT 1 AS x",
    "CREATE TEMP TABLE copy AS SELECT * FROM main._tessera_checkpoint",
    "CREATE TEMP VIEW v AS SELECT 1 AS x",
    "CREATE VIEW temp.v2 AS SELECT 1 AS x",
    "CREATE INDEX temp.t_x ON t (x)",
    "CREATE TEMP TRIGGER t_grow AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP VIEW _tessera_checkpoint AS SELECT 1 AS id, 0 AS position, 1 AS setup",
    "CREATE TEMP TABLE _tessera_checkpoint (id INTEGER PRIMARY KEY, position INTEGER, setup INTEGER)",
    "CREATE TABLE temp._tessera_checkpoint (id INTEGER PRIMARY KEY, position INTEGER, setup INTEGER)",
    "CREATE TEMP TABLE _TESSERA_CHECKPOINT (id INTEGER PRIMARY KEY, position INTEGER, setup INTEGER)",
    "CREATE TEMP TABLE _tessera_parked (position INTEGER PRIMARY KEY, event_type TEXT, error TEXT, parked_at TEXT)",
    "CREATE TEMP VIEW _tessera_parked AS SELECT 1 AS position, 'x' AS event_type, 'x' AS error, 'x' AS parked_at",
    "CREATE TEMP TABLE decoy (id INTEGER PRIMARY KEY, position INTEGER, setup INTEGER)",
    "ALTER TABLE temp.decoy RENAME TO _tessera_checkpoint",
    "ALTER TABLE decoy RENAME TO _tessera_checkpoint",
    "CREATE TEMP TRIGGER rewind AFTER UPDATE ON main._tessera_checkpoint \
     BEGIN UPDATE main._tessera_checkpoint SET position = 0; END",
    "CREATE TEMP TRIGGER freeze BEFORE UPDATE ON main._tessera_checkpoint \
     BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TEMP TRIGGER forget BEFORE INSERT ON main._tessera_parked \
     BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TRIGGER temp.rewind2 AFTER UPDATE ON main._tessera_checkpoint \
     BEGIN UPDATE main._tessera_checkpoint SET position = 0; END",
];

/// Temporary objects that would outlive one call on a connection a pool hands to the
/// next: the read side's version of the tricks, against pooled read-only connections.
pub const READ_TEMP_TRICKS: &[&str] = &[
    "CREATE TEMP TABLE t (x)",
    "CREATE TABLE temp.t2 (x)",
    "CREATE TEMP VIEW v AS SELECT 1 AS x",
    "CREATE TEMP VIEW notes AS SELECT 0 AS position",
    "CREATE TEMP TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)",
    "CREATE TEMP TRIGGER t_grow AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP VIEW _tessera_checkpoint AS SELECT 1 AS id, 0 AS position, 1 AS setup",
];

/// JSON text nested `depth` arrays deep around `1`.
pub fn nested_json(depth: usize) -> String {
    let mut text = String::with_capacity(depth * 2 + 1);
    for _ in 0..depth {
        text.push('[');
    }
    text.push('1');
    for _ in 0..depth {
        text.push(']');
    }
    text
}
