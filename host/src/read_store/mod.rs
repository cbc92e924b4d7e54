//! The read store: one SQLite database per projection version, owned by the host.
//!
//! A projection writes only through a [`ProjectionDb`]: its own file, inside a batch
//! transaction that the host opens and commits together with the projection's
//! checkpoint, so a crash never applies an event twice or skips one. Queries read
//! through a [`ReadPool`]: read-only connections that refuse anything but reading.
//!
//! The doors are shut by construction, not convention: `ATTACH` is impossible (the
//! attached-database limit is 0), and an authorizer refuses, for guest statements,
//! transactions, savepoints, pragmas, virtual tables and writes to the host's own
//! tables, and anything in the `temp` schema; for query connections, everything but
//! reading. The host's own statements name their schema (`main.`), so nothing a guest
//! makes can stand in for the host's tables. Every guest statement runs within its
//! call's [`Budget`] and under [`SqlBounds`] (see `guest.rs`).
//!
//! This module knows nothing of Wasm or HTTP.

mod guest;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, params_from_iter};

pub use guest::{Budget, SqlBounds, limit_heap};
use guest::{BudgetSlot, GuestMode, authorize_projection, authorize_read};

/// The most rows one guest query may return.
const MAX_ROWS: usize = 10_000;
/// The most bytes of text and blobs one guest query may return.
const MAX_RESULT_BYTES: usize = 16 << 20;
/// Read connections kept per projection version.
const MAX_IDLE_READERS: usize = 32;

/// A SQL value crossing between the host and a guest.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The rows a statement returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            SqlValue::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            SqlValue::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            SqlValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Why a read-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadStoreError {
    /// SQLite refused or failed. For a guest statement, report the message to the guest.
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    /// The result is larger than a guest may receive; the guest should page.
    #[error("the result is too large: more than {MAX_ROWS} rows or {MAX_RESULT_BYTES} bytes")]
    TooLarge,
    /// The statement ran past its call's deadline, or the host is stopping: the call
    /// is over.
    #[error("the statement was interrupted: its call ran out of time")]
    Interrupted,
    /// The projection's database reached its size bound; it needs a larger bound
    /// (`disk_mb`) or a projection that keeps less.
    #[error("the projection's database reached its size bound of {} MiB", .bound >> 20)]
    SizeBound { bound: u64 },
    /// SQLite rolled the batch's transaction back by itself (after a full database or
    /// exhausted memory): the batch failed as a whole and is handled by policy.
    #[error("the batch was rolled back: {0}")]
    BatchLost(String),
    #[error("read store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadStoreError {
    /// The error as the guest's caller must see it: an interruption or a full
    /// database is told apart from other SQL failures.
    fn classified(self, bounds: SqlBounds) -> Self {
        match self {
            ReadStoreError::Sql(error) => guest::classify(error, bounds),
            other => other,
        }
    }
}

/// An event a projection skipped after it kept failing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Parked {
    pub position: u64,
    pub event_type: String,
    pub error: String,
    pub parked_at: String,
}

/// A projection version's database, opened for writing by its worker.
#[derive(Debug)]
pub struct ProjectionDb {
    conn: Connection,
    /// True while guest statements run: the authorizer then applies the guest rules.
    guest: Arc<AtomicBool>,
    /// The deadline of the guest statement running, enforced by the progress handler.
    budget: BudgetSlot,
    bounds: SqlBounds,
    /// A batch transaction is open.
    in_batch: bool,
    /// Why SQLite rolled the open batch back on its own (a full database, memory
    /// exhausted): nothing more of the batch may run, and it must not commit.
    lost: Option<String>,
    path: PathBuf,
}

impl ProjectionDb {
    /// Opens (creating if needed) the database at `path`. With `check`, a database
    /// that fails `PRAGMA quick_check` is moved aside (`*.corrupt`) and started afresh:
    /// a read model can always be rebuilt from the log.
    pub fn open(path: &Path, check: bool, bounds: SqlBounds) -> Result<Self, ReadStoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if check && path.exists() {
            let verdict = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .map_err(|e| e.to_string())
                .and_then(|conn| crate::event_store::quick_check(&conn));
            if let Err(finding) = verdict {
                tracing::error!(file = %path.display(), %finding, "projection database is damaged; rebuilding it from the log");
                let mut aside = path.as_os_str().to_owned();
                aside.push(".corrupt");
                std::fs::rename(path, &aside)?;
                remove_projection_db(path)?;
            }
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The checkpoint commits with the data, and the log can rebuild both, so a
        // power loss that drops the last commits only means re-applying them.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(include_str!("internal.sql"))?;
        guest::limit(&conn, bounds)?;
        crate::event_store::plan_once(&conn)?;
        // The size bound, in pages. A database already past it (the bound was lowered)
        // keeps its pages and cannot grow.
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (bounds.max_bytes / page_size.max(512) as u64).max(1);
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        conn.pragma_update(None, "max_page_count", pages)?;
        // After a checkpoint the write-ahead log shrinks back rather than keeping the
        // size of the largest batch.
        conn.pragma_update(None, "journal_size_limit", 8 << 20)?;
        let budget = BudgetSlot::default();
        budget.install(&mut conn)?;
        let guest = Arc::new(AtomicBool::new(false));
        let flag = guest.clone();
        conn.authorizer(Some(move |context: AuthContext<'_>| {
            if flag.load(Ordering::Relaxed) {
                authorize_projection(&context)
            } else {
                Authorization::Allow
            }
        }))?;
        Ok(ProjectionDb {
            conn,
            guest,
            budget,
            bounds,
            in_batch: false,
            lost: None,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint and whether setup has run.
    pub fn state(&self) -> Result<(u64, bool), ReadStoreError> {
        let (position, setup): (i64, i64) =
            self.conn
                .query_row(include_str!("select_checkpoint.sql"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok((position as u64, setup != 0))
    }

    /// Opens the batch transaction.
    pub fn begin(&mut self) -> Result<(), ReadStoreError> {
        self.control("BEGIN IMMEDIATE")?;
        self.in_batch = true;
        self.lost = None;
        Ok(())
    }

    /// Commits the batch with its checkpoint (and the setup mark, once setup has run).
    pub fn commit(&mut self, position: u64, setup_done: bool) -> Result<(), ReadStoreError> {
        if let Some(reason) = &self.lost {
            return Err(ReadStoreError::BatchLost(reason.clone()));
        }
        let bounds = self.bounds;
        let full = |e| guest::classify(e, bounds);
        self.conn
            .execute(
                include_str!("update_checkpoint.sql"),
                (position as i64, setup_done as i64),
            )
            .map_err(full)?;
        self.control("COMMIT").map_err(full)?;
        self.in_batch = false;
        Ok(())
    }

    /// Why SQLite rolled back the open batch on its own, if it did: the batch failed,
    /// whatever the guest made of the error.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// Runs one of the host's fixed transaction statements. Never from the statement
    /// cache: that cache is the guest's, and a statement the host prepared there (with
    /// the host's rights) would be handed to a guest sending the same text.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }

    /// After a guest statement: if the batch's transaction is gone (SQLite rolls a
    /// transaction back by itself on a full database or exhausted memory), the batch
    /// is lost, and so are the guest's later statements, which would otherwise
    /// commit on their own outside any batch.
    fn check_batch<T>(&mut self, result: Result<T, ReadStoreError>) -> Result<T, ReadStoreError> {
        if self.in_batch && self.lost.is_none() && self.conn.is_autocommit() {
            let reason = match &result {
                Err(error) => error.to_string(),
                Ok(_) => "the batch's transaction ended inside a statement".to_string(),
            };
            self.lost = Some(reason.clone());
            return Err(ReadStoreError::BatchLost(reason));
        }
        result
    }

    /// Parks an event inside the current batch: it commits with the checkpoint that
    /// moves past it.
    pub fn park(&mut self, parked: &Parked) -> Result<(), ReadStoreError> {
        self.conn.execute(
            include_str!("insert_parked.sql"),
            (
                parked.position as i64,
                &parked.event_type,
                &parked.error,
                &parked.parked_at,
            ),
        )?;
        Ok(())
    }

    /// Removes a parked event (inside the current batch, or on its own).
    pub fn unpark(&mut self, position: u64) -> Result<bool, ReadStoreError> {
        let removed = self
            .conn
            .execute(include_str!("delete_parked.sql"), [position as i64])?;
        Ok(removed > 0)
    }

    /// The parked events, oldest first.
    pub fn parked(&self) -> Result<Vec<Parked>, ReadStoreError> {
        let mut statement = self.conn.prepare(include_str!("select_parked.sql"))?;
        let rows = statement.query_map([], |r| {
            Ok(Parked {
                position: r.get::<_, i64>(0)? as u64,
                event_type: r.get(1)?,
                error: r.get(2)?,
                parked_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Abandons the batch: nothing of it stays.
    pub fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.control("ROLLBACK");
        }
        self.in_batch = false;
        self.lost = None;
    }

    /// Runs a guest statement that returns no rows, within `budget`; returns the rows
    /// changed.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        budget: &Budget,
    ) -> Result<u64, ReadStoreError> {
        self.as_guest(budget, |conn| {
            let mut statement = conn.prepare_cached(sql)?;
            Ok(statement.execute(params_from_iter(params))? as u64)
        })
    }

    /// Runs a guest statement within `budget` and returns its rows.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        budget: &Budget,
    ) -> Result<Rows, ReadStoreError> {
        self.as_guest(budget, |conn| query(conn, sql, params))
    }

    /// Runs `statement` under the guest's rules: its budget armed, the guest
    /// authorizer on, and the batch checked afterwards.
    fn as_guest<T>(
        &mut self,
        budget: &Budget,
        statement: impl FnOnce(&Connection) -> Result<T, ReadStoreError>,
    ) -> Result<T, ReadStoreError> {
        if budget.spent() {
            return Err(ReadStoreError::Interrupted);
        }
        if let Some(reason) = &self.lost {
            return Err(ReadStoreError::BatchLost(reason.clone()));
        }
        let result = {
            let _guest = GuestMode::enter(&self.guest);
            let _armed = self.budget.arm(budget);
            statement(&self.conn).map_err(|e| e.classified(self.bounds))
        };
        self.check_batch(result)
    }
}

fn query(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Rows, ReadStoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let width = columns.len();
    let mut rows = statement.query(params_from_iter(params))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        if out.len() == MAX_ROWS {
            return Err(ReadStoreError::TooLarge);
        }
        let mut values = Vec::with_capacity(width);
        for column in 0..width {
            let value = match row.get_ref(column)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(r) => SqlValue::Real(r),
                ValueRef::Text(t) => {
                    bytes += t.len();
                    SqlValue::Text(String::from_utf8_lossy(t).into_owned())
                }
                ValueRef::Blob(b) => {
                    bytes += b.len();
                    SqlValue::Blob(b.to_vec())
                }
            };
            values.push(value);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(ReadStoreError::TooLarge);
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

/// Read-only connections to one projection version's database, for queries.
#[derive(Debug)]
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

/// One read-only connection, with the budget slot its progress handler watches.
#[derive(Debug)]
struct Reader {
    conn: Connection,
    budget: BudgetSlot,
}

impl ReadPool {
    pub fn new(path: &Path) -> Self {
        ReadPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs a guest's read-only statement within `budget`. Blocking: call from a
    /// blocking thread.
    pub fn query(
        &self,
        sql: &str,
        params: &[SqlValue],
        budget: &Budget,
    ) -> Result<Rows, ReadStoreError> {
        if budget.spent() {
            return Err(ReadStoreError::Interrupted);
        }
        let reader = self.reader()?;
        let result = {
            let _armed = reader.budget.arm(budget);
            query(&reader.conn, sql, params)
        };
        self.give_back(reader);
        result.map_err(|e| e.classified(SqlBounds::default()))
    }

    /// Runs one of the host's own reads, with no deadline.
    fn host_query(&self, sql: &str) -> Result<Rows, ReadStoreError> {
        let reader = self.reader()?;
        let result = query(&reader.conn, sql, &[]);
        self.give_back(reader);
        result
    }

    fn reader(&self) -> Result<Reader, ReadStoreError> {
        let pooled = self.idle.lock().expect("read pool").pop();
        match pooled {
            Some(reader) => Ok(reader),
            None => self.open(),
        }
    }

    fn give_back(&self, reader: Reader) {
        let mut idle = self.idle.lock().expect("read pool");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
    }

    /// The parked events of this projection version, oldest first.
    pub fn parked(&self) -> Result<Vec<Parked>, ReadStoreError> {
        let rows = self.host_query(include_str!("select_parked.sql"))?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [
                    SqlValue::Integer(position),
                    SqlValue::Text(event_type),
                    SqlValue::Text(error),
                    SqlValue::Text(parked_at),
                ] => Some(Parked {
                    position: *position as u64,
                    event_type: event_type.clone(),
                    error: error.clone(),
                    parked_at: parked_at.clone(),
                }),
                _ => None,
            })
            .collect())
    }

    fn open(&self) -> Result<Reader, ReadStoreError> {
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", true)?;
        guest::limit(&conn, SqlBounds::default())?;
        crate::event_store::plan_once(&conn)?;
        conn.authorizer(Some(|context: AuthContext<'_>| authorize_read(&context)))?;
        let budget = BudgetSlot::default();
        budget.install(&mut conn)?;
        Ok(Reader { conn, budget })
    }
}

/// Where projection databases live: `<root>/<name>/v<schema version>.g<generation>.db`.
/// A rebuild makes a new generation of the same version beside the old one.
pub fn projection_path(root: &Path, name: &str, schema_version: u32, generation: u32) -> PathBuf {
    root.join(name)
        .join(format!("v{schema_version}.g{generation}.db"))
}

/// Deletes a projection database and its WAL files.
pub fn remove_projection_db(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}
