//! The PostgreSQL write store: one log that several hosts share.
//!
//! Each host runs one writer task with a connection of its own. The writer takes every
//! append waiting in its queue (up to [`MAX_GROUP`]) and commits them in one
//! transaction, hence one WAL flush: it locks the head row, reads the current version
//! of every stream the group touches and every idempotency key it carries, decides each
//! append in memory (an append decided at an older version is answered
//! [`AppendError::Conflict`] and takes no other append with it), then writes the
//! group's events and keys with one statement each, moves the head and commits.
//! Acknowledgements go out only after that commit.
//!
//! **Global positions readers can trust.** Positions are assigned under a lock at
//! commit: every writing transaction, on every host, starts by locking the single row
//! of `tessera_head` (`SELECT ... FOR UPDATE`) and only then reads the head, numbers its
//! events from it, and moves it forward; the lock is released by the commit. So the
//! transactions that write events commit one after another in the order of their
//! positions, and a transaction that takes positions after `p` can only start numbering
//! once the one holding `p` has committed (PostgreSQL makes a commit visible before it
//! releases the transaction's locks). A reader that has seen position `p + 1` has
//! therefore every position up to `p` visible too: `read_all` after a checkpoint never
//! skips an event that commits later with a smaller position (the sequence-gap problem
//! of stores numbering with a sequence, where numbers are taken in one order and
//! committed in another). The price is that commits on one database are serialised;
//! group commit keeps that to one lock hold per group of appends.
//!
//! **Optimistic concurrency across hosts.** Under the head lock, a writer sees every
//! append committed before it (each statement in READ COMMITTED sees the commits made
//! before it started, and every other writer has committed or not yet started), so the
//! version check is exact: two hosts racing on one stream never both win. The primary
//! key on `(stream, version)` checks it again in the database; should a row written
//! outside this scheme break it, the group is decided again in a new transaction and
//! the append that lost is answered `Conflict`.
//!
//! **The head.** Every append transaction notifies channel `tessera_head` with the new
//! position (delivered at commit). Each host listens on a connection of its own and
//! also reads the head row every [`HEAD_POLL`], so a lost notification or a dropped
//! connection delays projections by at most that long, and never stalls them.
//!
//! **Errors.** No tokio-postgres or deadpool type reaches the trait's callers except as
//! a boxed source: a database that cannot be reached (no connection, a connection lost,
//! the server shutting down or out of connections) is [`StoreError::Unavailable`] (an
//! HTTP 503 to retry), any other failure [`StoreError::Database`], or
//! [`StoreError::CommitFailed`] for every append of a failed group. A connection lost
//! during `COMMIT` leaves the outcome unknown: the appends are answered as failed, and a
//! retry with the same idempotency key replays them if they landed. The writer and the
//! pools connect again on their next use.
//!
//! Reads go through a pool of connections. [`EventStore::read_stream_blocking`] and
//! [`EventStore::snapshot_blocking`] wait on a thread of the store's own (with a
//! runtime and connections of its own) and never on the caller's runtime, so they may
//! be called from any thread; [`EventStore::reads_blocking`] is false, so the command
//! bus reads with the async methods instead.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};
use tokio_util::sync::CancellationToken;

use super::{
    AppendError, AppendOutcome, AppendRequest, Backend, BoxError, Commit, Durability, EventStore,
    IdempotentCommit, PendingSnapshots, RawEvent, RecordedEvent, Snapshot, StoreError,
};

/// The most appends one group commit takes. Bounds the latency a full queue adds.
const MAX_GROUP: usize = 512;
/// Read connections per host.
const POOL_SIZE: usize = 16;
/// Connections of the thread that serves blocking reads.
const BLOCKING_POOL_SIZE: usize = 4;
/// How long the writer's queue is quiet before snapshots left over are written.
const IDLE_FLUSH: Duration = Duration::from_millis(100);
/// How often the head row is read, notifications or not.
const HEAD_POLL: Duration = Duration::from_millis(200);
/// How long a lost listening connection waits before it connects again.
const RECONNECT: Duration = Duration::from_millis(500);
/// How often the database's size is read for `/metrics`.
const SIZE_POLL: Duration = Duration::from_secs(10);
/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits for a pooled connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The advisory lock that serialises hosts applying the schema at once ("tessera").
const SCHEMA_LOCK: i64 = 0x0074_6573_7365_7261;
/// The channel commits are announced on.
const CHANNEL: &str = "tessera_head";

/// What failed, and while doing what: the source of a [`StoreError::Database`].
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
struct Failure {
    doing: &'static str,
    #[source]
    source: BoxError,
}

/// Any of the database crates' errors, boxed, and whether it says the database cannot
/// be reached (what [`Doing::doing`] takes).
struct BoxErrorSource {
    error: BoxError,
    unreachable: bool,
}

impl From<tokio_postgres::Error> for BoxErrorSource {
    fn from(error: tokio_postgres::Error) -> Self {
        BoxErrorSource {
            unreachable: unreachable(&error),
            error: Box::new(error),
        }
    }
}

impl From<deadpool_postgres::PoolError> for BoxErrorSource {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        let unreachable = match &error {
            PoolError::Backend(error) => unreachable(error),
            // No connection could be made or freed in time: the database is down,
            // or every connection is taken.
            PoolError::Timeout(_) | PoolError::Closed | PoolError::NoRuntimeSpecified => true,
            PoolError::PostCreateHook(_) => false,
        };
        BoxErrorSource {
            error: Box::new(error),
            unreachable,
        }
    }
}

impl From<deadpool_postgres::BuildError> for BoxErrorSource {
    fn from(error: deadpool_postgres::BuildError) -> Self {
        BoxErrorSource {
            error: Box::new(error),
            unreachable: false,
        }
    }
}

/// True when `error` says the database cannot be reached rather than that it refused
/// an operation: no connection (closed, refused, timed out: errors without a SQL
/// state), or the server's own "connection exception", "shutting down", "starting up"
/// and "too many connections" states.
fn unreachable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        None => {
            error
                .source()
                .is_some_and(|source| source.is::<std::io::Error>())
                || error.to_string().contains("timed out")
        }
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
    }
}

/// Maps a database crate's error into a [`StoreError`], saying what was being done:
/// [`StoreError::Unavailable`] when the database cannot be reached, otherwise
/// [`StoreError::Database`]. No database crate's type reaches the trait's callers
/// except as a boxed source.
trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<BoxErrorSource>> Doing<T> for Result<T, E> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| {
            let BoxErrorSource { error, unreachable } = error.into();
            let failure = Box::new(Failure {
                doing,
                source: error,
            });
            if unreachable {
                StoreError::Unavailable(failure)
            } else {
                StoreError::Database(failure)
            }
        })
    }
}

/// A blocking read cannot be served: the store's reading thread is gone.
#[derive(Debug, thiserror::Error)]
#[error("the event store's blocking reader stopped")]
struct ReaderStopped;

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

struct Job {
    request: AppendRequest,
    reply: Reply,
}

/// Deletes expired idempotency keys, at most the number asked for.
struct Expiry {
    created_before_ms: i64,
    limit: usize,
    reply: oneshot::Sender<Result<usize, StoreError>>,
}

/// What the writer task is asked to do.
enum Work {
    Append(Job),
    Expire(Expiry),
}

/// An [`EventStore`] in a PostgreSQL database, shared by every host that opens it.
pub struct PostgresEventStore {
    config: tokio_postgres::Config,
    pool: Pool,
    work: Mutex<Option<mpsc::UnboundedSender<Work>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Snapshots waiting for the writer.
    snapshots: PendingSnapshots,
    head: watch::Receiver<u64>,
    /// Stops the task that follows other hosts' commits.
    stop: CancellationToken,
    follower: Mutex<Option<JoinHandle<()>>>,
    /// The database's size in bytes as last read (0: not read yet).
    size: Arc<AtomicU64>,
    /// The thread serving blocking reads, started by the first one.
    blocking: OnceLock<BlockingReader>,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl PostgresEventStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or
    /// the key-value form), creates the store's tables if missing, and starts the
    /// writer and the head's follower on the current runtime. `durability`
    /// [`Durability::Normal`] turns `synchronous_commit` off for this host's appends.
    pub async fn open(url: &str, durability: Durability) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().doing("invalid PostgreSQL connection URL")?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tessera");
        }
        let pool = pool(&config, POOL_SIZE)?;
        let head = {
            let mut client = pool.get().await.doing("cannot connect to PostgreSQL")?;
            let transaction = client
                .transaction()
                .await
                .doing("cannot create the store's tables")?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await
                .doing("cannot create the store's tables")?;
            transaction
                .batch_execute(include_str!("postgres/schema.sql"))
                .await
                .doing("cannot create the store's tables")?;
            transaction
                .commit()
                .await
                .doing("cannot create the store's tables")?;
            read_head(&pool).await?
        };
        // The writer connects now, so that a database that refuses a second
        // connection fails the start rather than the first command.
        let connection = WriterConnection::open(&config, durability).await?;
        let (head_tx, head_rx) = watch::channel(head);
        let head_tx = Arc::new(head_tx);
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let snapshots = PendingSnapshots::default();
        let writer = Writer {
            config: config.clone(),
            durability,
            connection: Some(connection),
        };
        let writer = tokio::spawn(write_loop(
            writer,
            work_rx,
            head_tx.clone(),
            snapshots.clone(),
        ));
        let stop = CancellationToken::new();
        let size = Arc::new(AtomicU64::new(0));
        let follower = tokio::spawn(follow_head(
            config.clone(),
            pool.clone(),
            head_tx,
            size.clone(),
            stop.clone(),
        ));
        Ok(PostgresEventStore {
            config,
            pool,
            work: Mutex::new(Some(work_tx)),
            writer: Mutex::new(Some(writer)),
            snapshots,
            head: head_rx,
            stop,
            follower: Mutex::new(Some(follower)),
            size,
            blocking: OnceLock::new(),
        })
    }

    /// Stops the writer after the appends already queued (later appends fail with
    /// [`StoreError::Closed`]), stops following the head and closes the connections.
    pub async fn close(&self) {
        self.work.lock().expect("work lock").take();
        let writer = self.writer.lock().expect("writer lock").take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        self.stop.cancel();
        let follower = self.follower.lock().expect("follower lock").take();
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        self.pool.close();
    }

    fn send(&self, work: Work) -> Result<(), StoreError> {
        let sender = self.work.lock().expect("work lock");
        sender
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(work)
            .map_err(|_| StoreError::Closed)
    }

    /// The thread that serves blocking reads, started on first use.
    fn blocking(&self) -> &BlockingReader {
        self.blocking
            .get_or_init(|| BlockingReader::start(self.config.clone()))
    }
}

impl Drop for PostgresEventStore {
    fn drop(&mut self) {
        // The writer finishes what is queued and stops; the follower stops.
        self.work.lock().expect("work lock").take();
        self.stop.cancel();
    }
}

fn pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .build()
        .doing("cannot set up the PostgreSQL connection pool")
}

async fn read_head(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.doing("cannot connect to PostgreSQL")?;
    let statement = client
        .prepare_cached(include_str!("postgres/select_head.sql"))
        .await
        .doing("cannot read the head")?;
    let row = client
        .query_one(&statement, &[])
        .await
        .doing("cannot read the head")?;
    Ok(row.get::<_, i64>(0) as u64)
}

async fn select_stream(
    pool: &Pool,
    stream: &str,
    after_version: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let client = pool.get().await.doing("cannot connect to PostgreSQL")?;
    let statement = client
        .prepare_cached(include_str!("postgres/select_stream.sql"))
        .await
        .doing("cannot read a stream")?;
    let rows = client
        .query(
            &statement,
            &[&stream, &as_sql(after_version), &as_sql(limit as u64)],
        )
        .await
        .doing("cannot read a stream")?;
    rows.iter().map(decode).collect()
}

async fn select_snapshot(
    pool: &Pool,
    stream: &str,
    digest: &str,
) -> Result<Option<Snapshot>, StoreError> {
    let client = pool.get().await.doing("cannot connect to PostgreSQL")?;
    let statement = client
        .prepare_cached(include_str!("postgres/select_snapshot.sql"))
        .await
        .doing("cannot read a snapshot")?;
    let row = client
        .query_opt(&statement, &[&stream, &digest])
        .await
        .doing("cannot read a snapshot")?;
    Ok(row.map(|row| Snapshot {
        stream: stream.to_string(),
        digest: digest.to_string(),
        version: row.get::<_, i64>(0) as u64,
        state: row.get(1),
    }))
}

#[async_trait::async_trait]
impl EventStore for PostgresEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let (reply, outcome) = oneshot::channel();
        self.send(Work::Append(Job { request, reply }))?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        select_stream(&self.pool, stream, after_version, limit).await
    }

    fn read_stream_blocking(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (stream, after_version) = (stream.to_string(), after_version);
        self.blocking().read(move |pool| {
            Box::pin(async move { select_stream(&pool, &stream, after_version, limit).await })
        })
    }

    fn snapshot_blocking(
        &self,
        stream: &str,
        digest: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        let (stream, digest) = (stream.to_string(), digest.to_string());
        self.blocking().read(move |pool| {
            Box::pin(async move { select_snapshot(&pool, &stream, &digest).await })
        })
    }

    async fn snapshot(&self, stream: &str, digest: &str) -> Result<Option<Snapshot>, StoreError> {
        select_snapshot(&self.pool, stream, digest).await
    }

    fn reads_blocking(&self) -> bool {
        false
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn save_snapshot(&self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .doing("cannot connect to PostgreSQL")?;
        let statement = client
            .prepare_cached(include_str!("postgres/select_all.sql"))
            .await
            .doing("cannot read the log")?;
        let rows = client
            .query(
                &statement,
                &[&as_sql(after_position), &as_sql(limit as u64)],
            )
            .await
            .doing("cannot read the log")?;
        rows.iter().map(decode).collect()
    }

    async fn idempotent_commit(&self, key: &str) -> Result<Option<IdempotentCommit>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .doing("cannot connect to PostgreSQL")?;
        let statement = client
            .prepare_cached(include_str!("postgres/select_idempotency_keys.sql"))
            .await
            .doing("cannot read an idempotency key")?;
        let keys = [key];
        let Some(row) = client
            .query_opt(&statement, &[&&keys[..]])
            .await
            .doing("cannot read an idempotency key")?
        else {
            return Ok(None);
        };
        let stored = StoredKey::from_row(&row);
        let range = client
            .prepare_cached(include_str!("postgres/select_range.sql"))
            .await
            .doing("cannot read an idempotency key's events")?;
        let rows = client
            .query(&range, &[&stored.first, &stored.last])
            .await
            .doing("cannot read an idempotency key's events")?;
        let events = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(stored.commit(events)))
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
        self.send(Work::Expire(Expiry {
            created_before_ms,
            limit,
            reply,
        }))?;
        deleted.await.map_err(|_| StoreError::Closed)?
    }

    /// The whole database's size (`pg_database_size`), as read at most
    /// [`SIZE_POLL`] ago; none before the first reading.
    fn disk_bytes(&self) -> Option<u64> {
        match self.size.load(Ordering::Relaxed) {
            0 => None,
            bytes => Some(bytes),
        }
    }
}

/// PostgreSQL integers are signed: positions and limits past `i64::MAX` mean "past
/// everything", so they are clamped rather than wrapped to negative numbers.
fn as_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn decode(row: &Row) -> Result<RecordedEvent, StoreError> {
    let raw = RawEvent {
        position: column(row, 0)?,
        stream: column(row, 1)?,
        version: column(row, 2)?,
        event_type: column(row, 3)?,
        data: column(row, 4)?,
        metadata: column(row, 5)?,
        timestamp: column(row, 6)?,
    };
    raw.decode()
}

/// Column `index` of an event row; a column of another type is a corrupt log.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An idempotency key's row: the request it was stored with and its commit's extent.
#[derive(Debug, Clone)]
struct StoredKey {
    request_digest: String,
    stream: String,
    stream_version: i64,
    first: i64,
    last: i64,
}

impl StoredKey {
    /// From a row of `select_idempotency_keys.sql` (the key itself is column 0).
    fn from_row(row: &Row) -> StoredKey {
        StoredKey {
            request_digest: row.get(1),
            stream: row.get(2),
            stream_version: row.get(3),
            first: row.get(4),
            last: row.get(5),
        }
    }

    fn commit(self, events: Vec<RecordedEvent>) -> IdempotentCommit {
        IdempotentCommit {
            request_digest: self.request_digest,
            commit: Commit {
                stream: self.stream,
                stream_version: self.stream_version as u64,
                position: self.last as u64,
                events,
            },
        }
    }
}

/// The writer's statements, prepared once per connection.
struct Statements {
    lock_head: Statement,
    select_versions: Statement,
    select_keys: Statement,
    select_range: Statement,
    insert_events: Statement,
    insert_keys: Statement,
    advance_head: Statement,
    upsert_snapshots: Statement,
    delete_expired: Statement,
}

/// The writer's own connection (outside the pool: it lives as long as the writer,
/// with its session settings and prepared statements).
struct WriterConnection {
    client: Client,
    statements: Statements,
}

impl WriterConnection {
    async fn open(
        config: &tokio_postgres::Config,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .doing("cannot connect the writer to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "event store: the writer's connection failed");
            }
        });
        if durability == Durability::Normal {
            // Commits are acknowledged before their WAL record reaches the disk: a
            // crash of the database server (not of a host) may lose the last moments.
            client
                .batch_execute("SET synchronous_commit = off")
                .await
                .doing("cannot set up the writer's connection")?;
        }
        let prepare = async |sql: &str| {
            client
                .prepare(sql)
                .await
                .doing("cannot prepare the writer's statements")
        };
        let statements = Statements {
            lock_head: prepare(include_str!("postgres/lock_head.sql")).await?,
            select_versions: prepare(include_str!("postgres/select_stream_versions.sql")).await?,
            select_keys: prepare(include_str!("postgres/select_idempotency_keys.sql")).await?,
            select_range: prepare(include_str!("postgres/select_range.sql")).await?,
            insert_events: prepare(include_str!("postgres/insert_events.sql")).await?,
            insert_keys: prepare(include_str!("postgres/insert_idempotency_keys.sql")).await?,
            advance_head: prepare(include_str!("postgres/advance_head.sql")).await?,
            upsert_snapshots: prepare(include_str!("postgres/upsert_snapshots.sql")).await?,
            delete_expired: prepare(include_str!("postgres/delete_expired_idempotency_keys.sql"))
                .await?,
        };
        Ok(WriterConnection { client, statements })
    }
}

/// The writer task's state: its connection, made again after it breaks.
struct Writer {
    config: tokio_postgres::Config,
    durability: Durability,
    connection: Option<WriterConnection>,
}

/// What one group commit decided for each append, and the head it committed.
struct Committed {
    outcomes: Vec<Result<AppendOutcome, AppendError>>,
    head: Option<u64>,
}

impl Writer {
    /// The writer's connection, connected again if it was lost.
    async fn connection(&mut self) -> Result<&mut WriterConnection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connection = Some(WriterConnection::open(&self.config, self.durability).await?);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Commits `group` with `snapshots` riding along. A group that broke the
    /// `(stream, version)` key (a row written outside the head lock) is decided once
    /// more in a new transaction, where the version check sees that row.
    async fn commit(&mut self, group: &[Job], snapshots: &[Snapshot]) -> Committed {
        let mut decided_again = false;
        loop {
            let result = match self.connection().await {
                Ok(connection) => commit_group(connection, group, snapshots).await,
                Err(error) => Err(GroupError::Store(error)),
            };
            match result {
                Ok(committed) => return committed,
                Err(GroupError::Unique(_)) if !decided_again => decided_again = true,
                Err(error) => {
                    tracing::error!(error = %error, appends = group.len(), "group commit failed");
                    let unavailable = error.unreachable();
                    let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
                    let failed = || {
                        // A lost connection is the database's unavailability (a 503),
                        // whatever statement it interrupted.
                        if unavailable {
                            StoreError::Unavailable(Box::new(Shared(cause.clone())))
                        } else {
                            StoreError::CommitFailed(cause.clone())
                        }
                    };
                    return Committed {
                        outcomes: group
                            .iter()
                            .map(|_| Err(AppendError::Store(failed())))
                            .collect(),
                        head: None,
                    };
                }
            }
        }
    }

    /// Writes the snapshots waiting, in a transaction of their own.
    async fn flush_snapshots(&mut self, snapshots: &PendingSnapshots) {
        let left = snapshots.take();
        if left.is_empty() {
            return;
        }
        let written = match self.connection().await {
            Ok(connection) => {
                let statement = connection.statements.upsert_snapshots.clone();
                write_snapshots(&connection.client, &statement, &left)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = written {
            tracing::debug!(%error, "snapshots not written");
        }
    }

    /// Deletes expired keys in a transaction of its own, after the head lock: in the
    /// writers' order across hosts, as the trait asks.
    async fn expire(&mut self, expiry: Expiry) {
        let deleted = match self.connection().await {
            Ok(connection) => delete_expired(connection, &expiry).await,
            Err(error) => Err(error),
        };
        let _ = expiry.reply.send(deleted);
    }
}

async fn delete_expired(
    connection: &mut WriterConnection,
    expiry: &Expiry,
) -> Result<usize, StoreError> {
    let statements = &connection.statements;
    let transaction = connection
        .client
        .transaction()
        .await
        .doing("cannot delete expired idempotency keys")?;
    transaction
        .query_one(&statements.lock_head, &[])
        .await
        .doing("cannot delete expired idempotency keys")?;
    let deleted = transaction
        .execute(
            &statements.delete_expired,
            &[&expiry.created_before_ms, &as_sql(expiry.limit as u64)],
        )
        .await
        .doing("cannot delete expired idempotency keys")?;
    transaction
        .commit()
        .await
        .doing("cannot delete expired idempotency keys")?;
    Ok(deleted as usize)
}

/// Upserts snapshots, one per stream and digest (the newest of those given: one
/// statement may not update a row twice).
async fn write_snapshots(
    client: &impl tokio_postgres::GenericClient,
    statement: &Statement,
    snapshots: &[Snapshot],
) -> Result<u64, tokio_postgres::Error> {
    let mut newest: HashMap<(&str, &str), &Snapshot> = HashMap::new();
    for snapshot in snapshots {
        let slot = newest
            .entry((&snapshot.stream, &snapshot.digest))
            .or_insert(snapshot);
        if snapshot.version > slot.version {
            *slot = snapshot;
        }
    }
    let mut streams = Vec::with_capacity(newest.len());
    let mut digests = Vec::with_capacity(newest.len());
    let mut versions = Vec::with_capacity(newest.len());
    let mut states = Vec::with_capacity(newest.len());
    for snapshot in newest.into_values() {
        streams.push(snapshot.stream.as_str());
        digests.push(snapshot.digest.as_str());
        versions.push(as_sql(snapshot.version));
        states.push(snapshot.state.as_str());
    }
    client
        .execute(statement, &[&streams, &digests, &versions, &states])
        .await
}

/// Why a group's transaction failed (every append of the group fails with it).
#[derive(Debug, thiserror::Error)]
enum GroupError {
    /// The `(stream, version)` key refused an event: a row was written outside the
    /// head lock. The group is decided again.
    #[error("an event's stream version was taken meanwhile: {0}")]
    Unique(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GroupError {
    /// True when the group failed because the database could not be reached.
    fn unreachable(&self) -> bool {
        match self {
            GroupError::Unique(_) => false,
            GroupError::Database(error) => unreachable(error),
            GroupError::Store(error) => matches!(error, StoreError::Unavailable(_)),
        }
    }
}

/// One cause shared by every append of a failed group, as an error of its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Shared(Arc<dyn std::error::Error + Send + Sync>);

/// What one append of a group comes to before the events of replays are read.
enum Slot {
    Done(Result<AppendOutcome, AppendError>),
    /// Its key was stored by an earlier transaction: replay that commit.
    Replay(StoredKey),
}

/// The columns of a group's events and keys, written with one statement each.
#[derive(Default)]
struct Columns {
    positions: Vec<i64>,
    streams: Vec<String>,
    versions: Vec<i64>,
    types: Vec<String>,
    data: Vec<String>,
    metadata: Vec<String>,
    keys: Vec<String>,
    digests: Vec<String>,
    key_streams: Vec<String>,
    key_versions: Vec<i64>,
    key_firsts: Vec<i64>,
    key_lasts: Vec<i64>,
}

/// One group in one transaction: lock the head, read the versions and keys the group
/// needs, decide each append in memory, write it all, move the head, commit.
async fn commit_group(
    connection: &mut WriterConnection,
    group: &[Job],
    snapshots: &[Snapshot],
) -> Result<Committed, GroupError> {
    let statements = &connection.statements;
    let mut transaction = connection.client.transaction().await?;
    let mut head: i64 = transaction
        .query_one(&statements.lock_head, &[])
        .await?
        .get(0);

    let keys: Vec<&str> = group
        .iter()
        .filter_map(|job| job.request.idempotency.as_ref().map(|i| i.key.as_str()))
        .collect();
    let mut stored: HashMap<String, StoredKey> = HashMap::new();
    if !keys.is_empty() {
        for row in transaction.query(&statements.select_keys, &[&keys]).await? {
            stored.insert(row.get(0), StoredKey::from_row(&row));
        }
    }
    let mut streams: Vec<&str> = group
        .iter()
        .map(|job| job.request.stream.as_str())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    let mut versions: HashMap<String, i64> = HashMap::with_capacity(streams.len());
    for row in transaction
        .query(&statements.select_versions, &[&streams])
        .await?
    {
        versions.insert(row.get(0), row.get(1));
    }

    let now = jiff::Timestamp::now();
    let timestamp = now.to_string();
    let mut columns = Columns::default();
    // Keys appended earlier in this group: a later append with the same key replays.
    let mut fresh: HashMap<&str, IdempotentCommit> = HashMap::new();
    let mut slots = Vec::with_capacity(group.len());
    for job in group {
        let request = &job.request;
        if let Some(idempotency) = &request.idempotency {
            if let Some(first) = fresh.get(idempotency.key.as_str()) {
                slots.push(Slot::Done(Ok(AppendOutcome::AlreadyApplied(first.clone()))));
                continue;
            }
            if let Some(found) = stored.get(&idempotency.key) {
                slots.push(Slot::Replay(found.clone()));
                continue;
            }
        }
        let actual = versions.get(&request.stream).copied().unwrap_or(0) as u64;
        if actual != request.expected_version {
            slots.push(Slot::Done(Err(AppendError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected_version,
                actual,
            })));
            continue;
        }
        let metadata = match request
            .events
            .iter()
            .map(|event| serde_json::to_string(&event.metadata))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(metadata) => metadata,
            Err(error) => {
                slots.push(Slot::Done(Err(AppendError::Store(StoreError::Corrupt(
                    error.to_string(),
                )))));
                continue;
            }
        };
        let mut events = Vec::with_capacity(request.events.len());
        for ((offset, event), metadata) in request.events.iter().enumerate().zip(metadata) {
            head += 1;
            let version = actual + 1 + offset as u64;
            columns.positions.push(head);
            columns.streams.push(request.stream.clone());
            columns.versions.push(version as i64);
            columns.types.push(event.event_type.clone());
            columns.data.push(event.data.get().to_string());
            columns.metadata.push(metadata);
            events.push(RecordedEvent {
                position: head as u64,
                stream: request.stream.clone(),
                version,
                event_type: event.event_type.clone(),
                data: event.data.clone(),
                metadata: event.metadata.clone(),
                timestamp: timestamp.clone(),
            });
        }
        let stream_version = actual + events.len() as u64;
        versions.insert(request.stream.clone(), stream_version as i64);
        let position = head as u64;
        let commit = Commit {
            stream: request.stream.clone(),
            stream_version,
            position,
            events,
        };
        if let Some(idempotency) = &request.idempotency {
            // An empty range (first > last) records an append of no events.
            let first = commit.events.first().map_or(position + 1, |e| e.position);
            columns.keys.push(idempotency.key.clone());
            columns.digests.push(idempotency.request_digest.clone());
            columns.key_streams.push(request.stream.clone());
            columns.key_versions.push(stream_version as i64);
            columns.key_firsts.push(first as i64);
            columns.key_lasts.push(position as i64);
            fresh.insert(
                &idempotency.key,
                IdempotentCommit {
                    request_digest: idempotency.request_digest.clone(),
                    commit: commit.clone(),
                },
            );
        }
        slots.push(Slot::Done(Ok(AppendOutcome::Appended(commit))));
    }

    let mut outcomes = Vec::with_capacity(slots.len());
    for slot in slots {
        outcomes.push(match slot {
            Slot::Done(outcome) => outcome,
            Slot::Replay(found) => {
                let rows = transaction
                    .query(&statements.select_range, &[&found.first, &found.last])
                    .await?;
                let events = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
                Ok(AppendOutcome::AlreadyApplied(found.commit(events)))
            }
        });
    }

    if !columns.positions.is_empty() {
        let params: [&(dyn ToSql + Sync); 7] = [
            &columns.positions,
            &columns.streams,
            &columns.versions,
            &columns.types,
            &columns.data,
            &columns.metadata,
            &timestamp,
        ];
        transaction
            .execute(&statements.insert_events, &params)
            .await
            .map_err(|error| match error.code() {
                Some(code) if *code == SqlState::UNIQUE_VIOLATION => GroupError::Unique(error),
                _ => GroupError::Database(error),
            })?;
    }
    if !columns.keys.is_empty() {
        let params: [&(dyn ToSql + Sync); 8] = [
            &columns.keys,
            &columns.digests,
            &columns.key_streams,
            &columns.key_versions,
            &columns.key_firsts,
            &columns.key_lasts,
            &timestamp,
            &now.as_millisecond(),
        ];
        transaction
            .execute(&statements.insert_keys, &params)
            .await?;
    }
    let advanced = !columns.positions.is_empty();
    if advanced {
        transaction
            .query(&statements.advance_head, &[&head])
            .await?;
    }
    // Snapshots ride along under a savepoint of their own: one that fails to be
    // written is dropped and takes no append with it.
    if !snapshots.is_empty() {
        let savepoint = transaction.savepoint("snapshots").await?;
        match write_snapshots(&savepoint, &statements.upsert_snapshots, snapshots).await {
            Ok(_) => savepoint.commit().await?,
            Err(error) => {
                tracing::debug!(%error, "snapshots not written");
                savepoint.rollback().await?;
            }
        }
    }
    let committing = crate::metrics::Started::now();
    transaction.commit().await?;
    crate::metrics::group_committed(group.len(), committing);
    Ok(Committed {
        outcomes,
        head: advanced.then_some(head as u64),
    })
}

/// The writer task: takes appends in groups and commits each group at once; between
/// groups, the deletions of expired keys asked for; when quiet, the snapshots left.
async fn write_loop(
    mut writer: Writer,
    mut work: mpsc::UnboundedReceiver<Work>,
    head: Arc<watch::Sender<u64>>,
    snapshots: PendingSnapshots,
) {
    loop {
        let first = match tokio::time::timeout(IDLE_FLUSH, work.recv()).await {
            Err(_quiet) => {
                writer.flush_snapshots(&snapshots).await;
                continue;
            }
            Ok(None) => {
                writer.flush_snapshots(&snapshots).await;
                break;
            }
            Ok(Some(Work::Expire(expiry))) => {
                writer.expire(expiry).await;
                continue;
            }
            Ok(Some(Work::Append(job))) => job,
        };
        let mut group = vec![first];
        let mut expiries = Vec::new();
        while group.len() < MAX_GROUP {
            match work.try_recv() {
                Ok(Work::Append(job)) => group.push(job),
                Ok(Work::Expire(expiry)) => expiries.push(expiry),
                Err(_) => break,
            }
        }
        let riders = snapshots.take();
        let committed = writer.commit(&group, &riders).await;
        // Publish the head before acknowledging, so that a client who got an
        // acknowledgement and then asks for the head never sees an older one.
        if let Some(position) = committed.head {
            publish_head(&head, position);
        }
        for (job, outcome) in group.into_iter().zip(committed.outcomes) {
            // The caller may have given up (its request was cancelled); the append
            // stands regardless, as it would after a crash right after commit.
            let _ = job.reply.send(outcome);
        }
        for expiry in expiries {
            writer.expire(expiry).await;
        }
    }
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

/// Follows the commits of every host: notifications on [`CHANNEL`] as they come, the
/// head row every [`HEAD_POLL`] whatever happens to them. Also reads the database's
/// size every [`SIZE_POLL`].
async fn follow_head(
    config: tokio_postgres::Config,
    pool: Pool,
    head: Arc<watch::Sender<u64>>,
    size: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut poll = tokio::time::interval(HEAD_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sizing = tokio::time::interval(SIZE_POLL);
    sizing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listening: Option<Listener> = None;
    let mut retry_at = tokio::time::Instant::now();
    loop {
        if listening.is_none() && tokio::time::Instant::now() >= retry_at {
            match Listener::start(&config).await {
                Ok(listener) => listening = Some(listener),
                Err(error) => {
                    tracing::debug!(%error, "event store: cannot listen for commits; polling");
                    retry_at = tokio::time::Instant::now() + RECONNECT;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            note = next_note(&mut listening) => match note {
                Some(position) => publish_head(&head, position),
                None => {
                    tracing::debug!("event store: the listening connection closed; polling");
                    listening = None;
                    retry_at = tokio::time::Instant::now() + RECONNECT;
                }
            },
            _ = poll.tick() => match read_head(&pool).await {
                Ok(position) => publish_head(&head, position),
                Err(error) => tracing::debug!(%error, "event store: cannot read the head"),
            },
            _ = sizing.tick() => {
                if let Ok(bytes) = database_size(&pool).await {
                    size.store(bytes, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn database_size(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.doing("cannot connect to PostgreSQL")?;
    let row = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .doing("cannot read the database's size")?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// The next position notified, or `None` once the listening connection is gone;
/// never resolves while there is none.
async fn next_note(listening: &mut Option<Listener>) -> Option<u64> {
    match listening {
        Some(listener) => listener.notes.recv().await,
        None => std::future::pending().await,
    }
}

/// A connection that listens on [`CHANNEL`]; dropping it closes the connection.
struct Listener {
    _client: Client,
    notes: mpsc::UnboundedReceiver<u64>,
}

impl Listener {
    async fn start(config: &tokio_postgres::Config) -> Result<Listener, StoreError> {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .doing("cannot connect to PostgreSQL to listen")?;
        let (notes_tx, notes) = mpsc::unbounded_channel();
        // Notifications arrive on the connection's own stream of messages, which
        // this task drives (and with it the client's queries).
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(note))) => {
                        if let Ok(position) = note.payload().parse::<u64>()
                            && notes_tx.send(position).is_err()
                        {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::debug!(%error, "event store: the listening connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .doing("cannot listen for commits")?;
        Ok(Listener {
            _client: client,
            notes,
        })
    }
}

/// A read for the blocking reader's runtime: given its pool, the future to run.
type BlockingRead =
    Box<dyn FnOnce(Pool) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>;

/// A thread with a runtime and connections of its own, serving the blocking reads:
/// the caller waits on a channel, whatever thread it is on, and never drives (or
/// blocks) the runtime its own tasks run on.
struct BlockingReader {
    reads: mpsc::UnboundedSender<BlockingRead>,
}

impl BlockingReader {
    fn start(config: tokio_postgres::Config) -> BlockingReader {
        let (reads, mut requests) = mpsc::unbounded_channel::<BlockingRead>();
        let spawned = std::thread::Builder::new()
            .name("event-store-blocking-reads".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "event store: cannot start the blocking reader");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let pool = match pool(&config, BLOCKING_POOL_SIZE) {
                        Ok(pool) => pool,
                        Err(error) => {
                            tracing::error!(%error, "event store: cannot start the blocking reader");
                            return;
                        }
                    };
                    while let Some(read) = requests.recv().await {
                        tokio::spawn(read(pool.clone()));
                    }
                });
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "event store: cannot start the blocking reader");
        }
        BlockingReader { reads }
    }

    /// Runs `read` on the reader's runtime and waits for its result.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(Pool) -> std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = std::sync::mpsc::sync_channel(1);
        let request: BlockingRead = Box::new(move |pool| {
            Box::pin(async move {
                let _ = reply.send(read(pool).await);
            })
        });
        self.reads
            .send(request)
            .map_err(|_| StoreError::database(ReaderStopped))?;
        result
            .recv()
            .map_err(|_| StoreError::database(ReaderStopped))?
    }
}
