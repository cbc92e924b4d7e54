//! The SQLite write store.
//!
//! One writer thread owns the only write connection and commits appends in groups:
//! it takes every append waiting in its queue (up to [`MAX_GROUP`]), applies each under
//! its own savepoint (so a conflict in one rolls back that one alone) and commits the
//! group with a single transaction, hence a single fsync. Acknowledgements go out only
//! after that commit. Reads use a small pool of read-only connections; in WAL mode they
//! never block the writer, nor it them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{oneshot, watch};

use super::{
    AppendError, AppendOutcome, AppendRequest, Commit, Durability, EventStore, IdempotentCommit,
    PendingSnapshots, RawEvent, RecordedEvent, Snapshot, StoreError,
};

/// The most appends one group commit takes. Bounds the latency a full queue adds.
const MAX_GROUP: usize = 512;
/// Read connections kept open between reads: as many as commands may read at once
/// under load, so that connections (and their statement caches) are not opened and
/// closed per request.
const MAX_IDLE_READERS: usize = 128;
/// How often an idle writer checks for commits by other processes on the same file.
const FOREIGN_COMMIT_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

struct Job {
    request: AppendRequest,
    reply: Reply,
}

/// An [`EventStore`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteEventStore {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// Snapshots waiting for the writer.
    snapshots: PendingSnapshots,
    /// A deletion of expired idempotency keys waiting for the writer.
    expiry: std::sync::Arc<Mutex<Option<Expiry>>>,
    head: watch::Receiver<u64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("stream", &self.request.stream)
            .finish()
    }
}

impl SqliteEventStore {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        plan_once(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            },
        )?;
        conn.execute_batch(include_str!("schema.sql"))?;
        migrate(&conn)?;
        let head: i64 = conn.query_row(include_str!("select_head.sql"), [], |r| r.get(0))?;
        let (head_tx, head_rx) = watch::channel(head as u64);
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let snapshots = PendingSnapshots::default();
        let pending = snapshots.clone();
        let expiry = std::sync::Arc::new(Mutex::new(None));
        let expiring = expiry.clone();
        let writer = std::thread::Builder::new()
            .name("event-store-writer".into())
            .spawn(move || write_loop(conn, jobs_rx, head_tx, &pending, &expiring))?;
        Ok(SqliteEventStore {
            path: path.to_path_buf(),
            jobs: Mutex::new(Some(jobs_tx)),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            snapshots,
            expiry,
            head: head_rx,
        })
    }

    /// Checks the database file's structure (`PRAGMA quick_check`). Run at start after
    /// a run that did not stop cleanly.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let conn = open_reader(&self.path)?;
        quick_check(&conn).map_err(StoreError::Corrupt)
    }

    /// Stops the writer after the appends already queued; later appends fail with
    /// [`StoreError::Closed`]. Blocks until the writer has finished.
    pub fn close(&self) {
        self.jobs.lock().expect("jobs lock").take();
        if let Some(writer) = self.writer.lock().expect("writer lock").take() {
            let _ = writer.join();
        }
    }

    /// Runs `read` on a pooled read-only connection, on this thread.
    fn read_now<R>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().expect("readers lock").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = read(&conn);
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Runs `read` on a pooled read-only connection, on a blocking thread.
    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().expect("readers lock").pop();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path)?,
            };
            let result = read(&conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

/// SQLite's errors become the store's, which name no database crate.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::database(error)
    }
}

impl Drop for SqliteEventStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// `PRAGMA quick_check`: Ok, or what it found.
pub(crate) fn quick_check(conn: &Connection) -> Result<(), String> {
    let findings: Vec<String> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| e.to_string())?;
    if findings == ["ok"] {
        Ok(())
    } else {
        Err(findings.join("; "))
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    plan_once(&conn)?;
    Ok(conn)
}

/// Keeps each statement's first plan. By default SQLite compiles a statement again
/// whenever a parameter it planned with (`LIMIT ?`, a comparison it could narrow)
/// gets a new value: on every command, since every command binds a new stream.
pub(crate) fn plan_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

#[async_trait::async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let (reply, outcome) = oneshot::channel();
        {
            let jobs = self.jobs.lock().expect("jobs lock");
            let jobs = jobs.as_ref().ok_or(StoreError::Closed)?;
            jobs.send(Job { request, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_string();
        self.read(move |conn| select_stream(conn, &stream, after_version, limit))
            .await
    }

    fn read_stream_blocking(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_now(|conn| select_stream(conn, stream, after_version, limit))
    }

    fn snapshot_blocking(
        &self,
        stream: &str,
        digest: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.read_now(|conn| select_snapshot(conn, stream, digest))
    }

    async fn snapshot(&self, stream: &str, digest: &str) -> Result<Option<Snapshot>, StoreError> {
        let (stream, digest) = (stream.to_string(), digest.to_string());
        self.read(move |conn| select_snapshot(conn, &stream, &digest))
            .await
    }

    fn backend(&self) -> super::Backend {
        super::Backend::Sqlite
    }

    fn save_snapshot(&self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(include_str!("select_all.sql"))?;
            let rows = statement.query_map(
                params![as_sql(after_position), as_sql(limit as u64)],
                raw_event,
            )?;
            rows.map(|row| row?.decode()).collect()
        })
        .await
    }

    async fn idempotent_commit(&self, key: &str) -> Result<Option<IdempotentCommit>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| find_idempotent_commit(conn, &key))
            .await
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    async fn expire_idempotency_keys(
        &self,
        created_before_ms: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let (reply, deleted) = oneshot::channel();
        {
            // The writer must still be running to take it.
            let jobs = self.jobs.lock().expect("jobs lock");
            if jobs.is_none() {
                return Err(StoreError::Closed);
            }
            // A newer request replaces one not taken yet (whose caller then sees
            // Closed and tries again at its next round).
            *self.expiry.lock().expect("expiry lock") = Some(Expiry {
                created_before_ms,
                limit,
                reply,
            });
        }
        deleted.await.map_err(|_| StoreError::Closed)?
    }

    /// The database file and its write-ahead log (the shared-memory index aside).
    fn disk_bytes(&self) -> Option<u64> {
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let database = size(&self.path).ok()?;
        Some(database + size(Path::new(&wal)).unwrap_or(0))
    }
}

/// The writer thread: takes appends in groups and commits each group at once. While
/// idle it watches for commits by other processes sharing the file, so the head it
/// publishes is the store's, not only this host's.
fn write_loop(
    mut conn: Connection,
    jobs: mpsc::Receiver<Job>,
    head: watch::Sender<u64>,
    snapshots: &PendingSnapshots,
    expiry: &Mutex<Option<Expiry>>,
) {
    let mut data_version = read_data_version(&conn);
    loop {
        let first = match jobs.recv_timeout(FOREIGN_COMMIT_POLL) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Quiet: snapshots left over get a transaction of their own.
                if flush_snapshots(&conn, snapshots) {
                    data_version = read_data_version(&conn);
                }
                // Not followed by a re-read of the data version: this connection's own
                // commits do not change it, and re-reading would hide a commit another
                // process made just before.
                expire_keys(&conn, expiry);
                let version = read_data_version(&conn);
                if version != data_version {
                    data_version = version;
                    if let Ok(position) =
                        conn.query_row(include_str!("select_head.sql"), [], |r| r.get::<_, i64>(0))
                    {
                        publish_head(&head, position as u64);
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                flush_snapshots(&conn, snapshots);
                if let Some(pending) = expiry.lock().expect("expiry lock").take() {
                    let _ = pending.reply.send(Err(StoreError::Closed));
                }
                break;
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let riders = snapshots.take();
        let outcomes = commit_group(&mut conn, &group, &riders);
        let new_head = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Ok(AppendOutcome::Appended(commit)) => commit.events.last().map(|e| e.position),
                _ => None,
            })
            .max();
        // Publish the head before acknowledging, so that a client who got an
        // acknowledgement and then asks for the head never sees an older one.
        if let Some(position) = new_head {
            publish_head(&head, position);
        }
        for (job, outcome) in group.into_iter().zip(outcomes) {
            // The caller may have given up (its request was cancelled); the append
            // stands regardless, as it would after a crash right after commit.
            let _ = job.reply.send(outcome);
        }
        // Under load the writer is never idle: a deletion waiting goes between groups,
        // after the group's acknowledgements (it is bounded, so the next group waits
        // for at most one bounded delete).
        expire_keys(&conn, expiry);
    }
}

/// Deletes expired idempotency keys, at most the number asked for.
#[derive(Debug)]
pub(super) struct Expiry {
    created_before_ms: i64,
    limit: usize,
    reply: oneshot::Sender<Result<usize, StoreError>>,
}

/// Runs the deletion waiting, if any, in a transaction of its own; true if it ran.
fn expire_keys(conn: &Connection, expiry: &Mutex<Option<Expiry>>) -> bool {
    let Some(pending) = expiry.lock().expect("expiry lock").take() else {
        return false;
    };
    let deleted = control(conn, "BEGIN IMMEDIATE")
        .and_then(|()| {
            conn.prepare_cached(include_str!("delete_expired_idempotency_keys.sql"))?
                .execute(params![
                    pending.created_before_ms,
                    as_sql(pending.limit as u64)
                ])
        })
        .and_then(|deleted| control(conn, "COMMIT").map(|()| deleted));
    if deleted.is_err() && !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK");
    }
    let _ = pending.reply.send(deleted.map_err(StoreError::from));
    true
}

/// Brings a store made by an earlier version up to this one's schema (`schema.sql`
/// creates what is missing; this changes what exists). Each step runs once, in one
/// transaction, so an interrupted migration is redone whole at the next open.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_created_ms: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('idempotency_keys') WHERE name = 'created_ms'",
        [],
        |r| r.get(0),
    )?;
    let mut sql = String::from("BEGIN IMMEDIATE;\n");
    if !has_created_ms {
        tracing::info!("event store: adding the idempotency keys' creation time (retention)");
        sql.push_str(include_str!("migrate_idempotency_created_ms.sql"));
    }
    sql.push_str(include_str!("index_idempotency_age.sql"));
    sql.push_str("\nCOMMIT;");
    conn.execute_batch(&sql).inspect_err(|_| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    })?;
    Ok(())
}

fn publish_head(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|current| {
        let advanced = position > *current;
        if advanced {
            *current = position;
        }
        advanced
    });
}

/// SQLite's counter of commits made by other connections to this file.
fn read_data_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Runs one of the writer's fixed statements (transaction control) through the
/// statement cache: preparing them anew for every group was a tenth of the writer's
/// time under load.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Writes the snapshots waiting, in a transaction of their own; true if there were any.
fn flush_snapshots(conn: &Connection, snapshots: &PendingSnapshots) -> bool {
    let left = snapshots.take();
    if left.is_empty() {
        return false;
    }
    let written = control(conn, "BEGIN IMMEDIATE")
        .and_then(|()| write_snapshots(conn, &left))
        .and_then(|()| control(conn, "COMMIT"));
    if let Err(error) = written {
        tracing::debug!(%error, "snapshots not written");
        if !conn.is_autocommit() {
            let _ = control(conn, "ROLLBACK");
        }
    }
    true
}

/// Writes snapshots inside the open transaction; a newer stored one is kept.
fn write_snapshots(conn: &Connection, snapshots: &[Snapshot]) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(include_str!("upsert_snapshot.sql"))?;
    for snapshot in snapshots {
        upsert.execute(params![
            snapshot.stream,
            snapshot.digest,
            as_sql(snapshot.version),
            snapshot.state,
        ])?;
    }
    Ok(())
}

fn commit_group(
    conn: &mut Connection,
    group: &[Job],
    snapshots: &[Snapshot],
) -> Vec<Result<AppendOutcome, AppendError>> {
    let fail_all = |error: rusqlite::Error| -> Vec<Result<AppendOutcome, AppendError>> {
        tracing::error!(%error, appends = group.len(), "group commit failed");
        let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
        group
            .iter()
            .map(|_| Err(AppendError::Store(StoreError::CommitFailed(cause.clone()))))
            .collect()
    };
    if let Err(error) = control(conn, "BEGIN IMMEDIATE") {
        return fail_all(error);
    }
    let timestamp = jiff::Timestamp::now().to_string();
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group {
        let outcome = match control(conn, "SAVEPOINT append") {
            Ok(()) => {
                let outcome = append_one(conn, &job.request, &timestamp);
                let finished = if outcome.is_ok() {
                    control(conn, "RELEASE append")
                } else {
                    control(conn, "ROLLBACK TO append")
                        .and_then(|()| control(conn, "RELEASE append"))
                };
                match finished {
                    Ok(()) => outcome,
                    Err(error) => Err(AppendError::Store(error.into())),
                }
            }
            Err(error) => Err(AppendError::Store(error.into())),
        };
        outcomes.push(outcome);
    }
    // Snapshots ride along under a savepoint of their own: one that fails to be
    // written is dropped and takes no append with it.
    if !snapshots.is_empty() && control(conn, "SAVEPOINT snapshots").is_ok() {
        let finished = match write_snapshots(conn, snapshots) {
            Ok(()) => control(conn, "RELEASE snapshots"),
            Err(error) => {
                tracing::debug!(%error, "snapshots not written");
                control(conn, "ROLLBACK TO snapshots")
                    .and_then(|()| control(conn, "RELEASE snapshots"))
            }
        };
        if let Err(error) = finished {
            tracing::debug!(%error, "snapshot savepoint");
        }
    }
    let committing = crate::metrics::Started::now();
    if let Err(error) = control(conn, "COMMIT") {
        if !conn.is_autocommit() {
            let _ = control(conn, "ROLLBACK");
        }
        return fail_all(error);
    }
    crate::metrics::group_committed(group.len(), committing);
    outcomes
}

fn append_one(
    conn: &Connection,
    request: &AppendRequest,
    timestamp: &str,
) -> Result<AppendOutcome, AppendError> {
    if let Some(idempotency) = &request.idempotency
        && let Some(stored) = find_idempotent_commit(conn, &idempotency.key)?
    {
        return Ok(AppendOutcome::AlreadyApplied(stored));
    }
    let actual: i64 = conn
        .prepare_cached(include_str!("select_stream_version.sql"))
        .and_then(|mut s| s.query_row([&request.stream], |r| r.get(0)))
        .map_err(StoreError::from)?;
    let actual = actual as u64;
    if actual != request.expected_version {
        return Err(AppendError::Conflict {
            stream: request.stream.clone(),
            expected: request.expected_version,
            actual,
        });
    }
    let mut insert = conn
        .prepare_cached(include_str!("insert_event.sql"))
        .map_err(StoreError::from)?;
    let mut events = Vec::with_capacity(request.events.len());
    for (offset, event) in request.events.iter().enumerate() {
        let version = actual + 1 + offset as u64;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        insert
            .execute(params![
                request.stream,
                version as i64,
                event.event_type,
                event.data.get(),
                metadata,
                timestamp,
            ])
            .map_err(StoreError::from)?;
        events.push(RecordedEvent {
            position: conn.last_insert_rowid() as u64,
            stream: request.stream.clone(),
            version,
            event_type: event.event_type.clone(),
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            timestamp: timestamp.to_string(),
        });
    }
    let stream_version = actual + events.len() as u64;
    let position = match events.last() {
        Some(last) => last.position,
        None => conn
            .query_row(include_str!("select_head.sql"), [], |r| r.get::<_, i64>(0))
            .map_err(StoreError::from)? as u64,
    };
    if let Some(idempotency) = &request.idempotency {
        // An empty range (first > last) records an append of no events.
        let first = events.first().map_or(position + 1, |e| e.position);
        conn.prepare_cached(include_str!("insert_idempotency_key.sql"))
            .and_then(|mut s| {
                s.execute(params![
                    idempotency.key,
                    idempotency.request_digest,
                    request.stream,
                    stream_version as i64,
                    first as i64,
                    position as i64,
                    timestamp,
                ])
            })
            .map_err(StoreError::from)?;
    }
    Ok(AppendOutcome::Appended(Commit {
        stream: request.stream.clone(),
        stream_version,
        position,
        events,
    }))
}

fn find_idempotent_commit(
    conn: &Connection,
    key: &str,
) -> Result<Option<IdempotentCommit>, StoreError> {
    let found = conn
        .prepare_cached(include_str!("select_idempotency_key.sql"))?
        .query_row([key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let Some((request_digest, stream, stream_version, first, last)) = found else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached(include_str!("select_range.sql"))?;
    let events = statement
        .query_map(params![first, last], raw_event)?
        .map(|row| row?.decode())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(IdempotentCommit {
        request_digest,
        commit: Commit {
            stream,
            stream_version: stream_version as u64,
            position: last as u64,
            events,
        },
    }))
}

fn select_snapshot(
    conn: &Connection,
    stream: &str,
    digest: &str,
) -> Result<Option<Snapshot>, StoreError> {
    let found = conn
        .prepare_cached(include_str!("select_snapshot.sql"))?
        .query_row([stream, digest], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(found.map(|(version, state)| Snapshot {
        stream: stream.to_string(),
        digest: digest.to_string(),
        version: version as u64,
        state,
    }))
}

fn select_stream(
    conn: &Connection,
    stream: &str,
    after_version: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut statement = conn.prepare_cached(include_str!("select_stream.sql"))?;
    let rows = statement.query_map(
        params![stream, as_sql(after_version), as_sql(limit as u64)],
        raw_event,
    )?;
    rows.map(|row| row?.decode()).collect()
}

/// SQLite integers are signed: positions and limits past `i64::MAX` mean "past
/// everything", so they are clamped rather than wrapped to negative numbers.
fn as_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn raw_event(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        position: row.get(0)?,
        stream: row.get(1)?,
        version: row.get(2)?,
        event_type: row.get(3)?,
        data: row.get(4)?,
        metadata: row.get(5)?,
        timestamp: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;
    use rusqlite::types::Value;

    /// Every statement on the command path runs from the statement cache: a statement
    /// compiled again at each execution (as SQLite does by default for `LIMIT ?` and
    /// some comparisons with parameters) cost a quarter of the host's time under load.
    #[test]
    fn cached_statements_are_not_compiled_again_when_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(super::SqliteEventStore::open(&path, super::Durability::Normal).unwrap());
        let conn = super::open_reader(&path).unwrap();
        for sql in [
            include_str!("select_stream.sql"),
            include_str!("select_stream_version.sql"),
            include_str!("select_all.sql"),
            include_str!("select_idempotency_key.sql"),
            include_str!("select_range.sql"),
        ] {
            let mut recompiled = 0;
            for run in 0..20 {
                let mut statement = conn.prepare_cached(sql).unwrap();
                let params: Vec<Value> = (0..statement.parameter_count())
                    .map(|n| {
                        if n == 0 && sql.contains("stream = ?1") || sql.contains("key = ?1") {
                            Value::Text(format!("s{run}"))
                        } else {
                            Value::Integer(run)
                        }
                    })
                    .collect();
                let mut rows = statement.query(rusqlite::params_from_iter(params)).unwrap();
                while rows.next().unwrap().is_some() {}
                drop(rows);
                recompiled = statement.get_status(StatementStatus::RePrepare);
            }
            assert_eq!(recompiled, 0, "{sql}");
        }
    }
}
