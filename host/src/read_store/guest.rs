//! The rules a guest's SQL runs under: what it may do (the authorizers), how long it
//! may run (a [`Budget`] checked by SQLite's progress handler), and how much it may
//! take (`sqlite3_limit`s, the database's page bound, the process-wide heap limit).
//!
//! SQLite runs a guest's statement in host code, where the Wasm deadline and memory
//! bound do not reach, so each bound is set on the connection itself:
//! - time: the progress handler stops a statement once its call's deadline passes or
//!   the host is stopping, so no statement outlives the call it belongs to;
//! - memory: no string or blob may exceed [`SqlBounds::max_length`], statements and
//!   columns are bounded, temporary structures live in memory under the process-wide
//!   hard heap limit ([`limit_heap`]);
//! - disk: a projection database holds at most [`SqlBounds::max_bytes`]
//!   (`max_page_count`), and the `temp` schema is closed to guests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, ErrorCode};

use super::ReadStoreError;

/// How many SQLite virtual-machine steps run between two looks at the budget.
const PROGRESS_STEPS: i32 = 1000;
/// The most bytes of SQL text in one guest statement.
const MAX_SQL_LENGTH: i32 = 1 << 20;
/// The most columns in a table, a result or an index.
const MAX_COLUMNS: i32 = 256;
/// The most bound parameters in one statement.
const MAX_VARIABLES: i32 = 4096;
/// How deeply triggers may fire triggers.
const MAX_TRIGGER_DEPTH: i32 = 16;

/// How long a guest statement may run: until its call's deadline, and never past the
/// moment the host starts stopping.
#[derive(Debug, Clone)]
pub struct Budget {
    pub deadline: Instant,
    /// Set when the host is shutting down: every call ends now.
    pub stop: Arc<AtomicBool>,
    /// Set when nobody waits for the call any more (its client went away).
    pub abandoned: Arc<AtomicBool>,
}

impl Budget {
    /// True once the statement must end.
    pub fn spent(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.abandoned.load(Ordering::Relaxed)
            || Instant::now() >= self.deadline
    }
}

/// What one connection's guest statements may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlBounds {
    /// The largest string or blob a statement may make or return, in bytes.
    pub max_length: usize,
    /// The largest a projection database may grow, in bytes.
    pub max_bytes: u64,
}

impl Default for SqlBounds {
    fn default() -> Self {
        SqlBounds {
            max_length: 16 << 20,
            max_bytes: 1 << 30,
        }
    }
}

/// The budget of the statement a connection is running, if a guest's.
#[derive(Debug, Clone, Default)]
pub(super) struct BudgetSlot(Arc<Mutex<Option<Budget>>>);

impl BudgetSlot {
    /// Installs the progress handler that enforces this slot's budget on `conn`.
    pub(super) fn install(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let slot = self.0.clone();
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                slot.lock()
                    .expect("budget lock")
                    .as_ref()
                    .is_some_and(Budget::spent)
            }),
        )
    }

    /// Arms the budget for the life of the returned guard.
    pub(super) fn arm(&self, budget: &Budget) -> ArmedBudget<'_> {
        *self.0.lock().expect("budget lock") = Some(budget.clone());
        ArmedBudget(self)
    }
}

/// Disarms the budget when the statement is done.
pub(super) struct ArmedBudget<'a>(&'a BudgetSlot);

impl Drop for ArmedBudget<'_> {
    fn drop(&mut self) {
        *self.0.0.lock().expect("budget lock") = None;
    }
}

/// Sets the limits every connection that runs guest SQL has.
pub(super) fn limit(conn: &Connection, bounds: SqlBounds) -> rusqlite::Result<()> {
    let length = i32::try_from(bounds.max_length).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH.min(length))?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS)?;
    conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES)?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, MAX_TRIGGER_DEPTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_WORKER_THREADS, 0)?;
    // Sorts and temporary b-trees stay in memory, under the heap limit, rather than
    // in temporary files that no size bound covers.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Bounds the memory SQLite may hold in this process, for every connection: past
/// `soft` it frees caches, and an allocation past `hard` fails its statement.
pub fn limit_heap(hard: u64) -> Result<(), ReadStoreError> {
    let conn = Connection::open_in_memory()?;
    let hard = i64::try_from(hard).unwrap_or(i64::MAX);
    // Lowering only: the pragma refuses to raise a limit already set in this process.
    conn.query_row(&format!("PRAGMA hard_heap_limit = {hard}"), [], |_| Ok(()))?;
    conn.query_row(
        &format!("PRAGMA soft_heap_limit = {}", hard / 2),
        [],
        |_| Ok(()),
    )?;
    Ok(())
}

/// Sorts SQLite's failure of a guest statement into what the caller must do about it.
pub(super) fn classify(error: rusqlite::Error, bounds: SqlBounds) -> ReadStoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => ReadStoreError::Interrupted,
        Some(ErrorCode::DiskFull) => ReadStoreError::SizeBound {
            bound: bounds.max_bytes,
        },
        _ => ReadStoreError::Sql(error),
    }
}

/// Sets the guest flag for the life of a statement.
pub(super) struct GuestMode<'a>(&'a AtomicBool);

impl<'a> GuestMode<'a> {
    pub(super) fn enter(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Relaxed);
        GuestMode(flag)
    }
}

impl Drop for GuestMode<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The host's own tables. (The schema table `sqlite_master` is written by SQLite
/// itself when tables are created, and cannot be written by statements directly
/// while pragmas are refused.)
fn is_internal(table: &str) -> bool {
    // SQLite names are case-insensitive.
    table
        .get(..8)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("_tessera"))
}

/// What a projection's own statements may do: shape and change its own tables in its
/// own (`main`) database.
pub(super) fn authorize_projection(context: &AuthContext<'_>) -> Authorization {
    use AuthAction::*;
    // Nothing may be made or changed in the `temp` schema: an object there shadows
    // one of the same name in `main` for every unqualified statement, and its storage
    // is not covered by the database's size bound.
    if context
        .database_name
        .is_some_and(|schema| schema.eq_ignore_ascii_case("temp"))
        && !matches!(
            context.action,
            Select | Read { .. } | Function { .. } | Recursive
        )
    {
        return Authorization::Deny;
    }
    // Everything that names a table or view must not name the host's own: writing
    // them would corrupt the checkpoint, a trigger on them would run inside the host's
    // statements with the host's rights, and a view of that name would shadow them.
    let named = match context.action {
        Select | Read { .. } | Function { .. } | Recursive => return Authorization::Allow,
        CreateTempTable { .. }
        | CreateTempIndex { .. }
        | CreateTempTrigger { .. }
        | CreateTempView { .. }
        | DropTempTable { .. }
        | DropTempIndex { .. }
        | DropTempTrigger { .. }
        | DropTempView { .. } => return Authorization::Deny,
        Insert { table_name }
        | Update { table_name, .. }
        | Delete { table_name }
        | CreateTable { table_name }
        | DropTable { table_name }
        | AlterTable { table_name, .. }
        | CreateIndex { table_name, .. }
        | CreateTrigger { table_name, .. } => table_name,
        CreateView { view_name } => view_name,
        DropIndex { .. }
        | DropView { .. }
        | DropTrigger { .. }
        | Reindex { .. }
        | Analyze { .. } => return Authorization::Allow,
        // Transactions belong to the host; ATTACH would reach other files; pragmas
        // could change durability or reach the file system; virtual tables too.
        _ => return Authorization::Deny,
    };
    if is_internal(named) {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

/// What a query may do: read.
pub(super) fn authorize_read(context: &AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Authorization::Allow,
        _ => Authorization::Deny,
    }
}
