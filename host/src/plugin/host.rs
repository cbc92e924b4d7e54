//! What a plugin instance sees of the host: its store data, the `log` import, and
//! stdout/stderr routed to `tracing`.
//!
//! Deny by construction: the WASI context grants no preopened directory, no
//! environment variable, no argument, no network address and no name lookup, and
//! stdin is closed. A guest that tries any of them gets an error from WASI, not access.
//!
//! Bounded by construction too: every SQL statement a guest runs carries its call's
//! [`Budget`] (the deadline, and the host's stop flag), and a statement cut short by it
//! ends the call as a deadline, not as an error the guest could ignore. What a guest
//! writes to its log, stdout and stderr is capped per call ([`LogBudget`]); the lines
//! past the cap are counted and reported in one line when the call ends.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1::command::tessera::plugin0_1_0::log;
use super::bindings::v0_1::projection::tessera::plugin0_1_0::projection_store;
use super::bindings::v0_1::query::tessera::plugin0_1_0::read_store;
use super::bindings::v0_2::command::tessera::plugin0_2_0::log as log_v0_2;
use super::bindings::v0_2::projection::tessera::plugin0_2_0::projection_store as projection_store_v0_2;
use super::bindings::v0_2::query::tessera::plugin0_2_0::read_store as read_store_v0_2;
use super::bindings::{sql_types, types, types_v0_1};
use crate::read_store::{Budget, ProjectionDb, ReadPool, ReadStoreError, Rows, SqlValue};

/// The most bytes of one unterminated output line kept before it is logged anyway.
const MAX_LINE: usize = 4096;
/// The most lines of log, stdout and stderr together that one call may emit.
const MAX_LOG_LINES: u32 = 256;
/// The most bytes of log, stdout and stderr together that one call may emit.
const MAX_LOG_BYTES: usize = 64 << 10;
/// What all the calls of one plugin may log per second, in bytes, and in a burst.
const LOG_RATE: f64 = 256.0 * 1024.0;
const LOG_BURST: f64 = 1024.0 * 1024.0;
/// What a line costs at least, so that floods of short lines are bounded too.
const LINE_COST: usize = 64;

/// The data of one plugin store: one call, or one short sequence of calls.
pub(crate) struct HostState {
    plugin: Arc<str>,
    /// When the call running now must end; SQL statements end then too.
    pub(crate) deadline: Instant,
    /// The host's stop flag: set, every call ends at once.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set when nobody waits for this call any more: it ends at once too.
    pub(crate) abandoned: Arc<AtomicBool>,
    log: Arc<LogBudget>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// For a projection's batch: its own database, inside the batch transaction.
    pub(crate) projection_db: Option<ProjectionDb>,
    /// For a query: the read pools of the projections it declared, by name.
    pub(crate) reads: Vec<(String, Arc<ReadPool>)>,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        max_memory: usize,
        stop: Arc<AtomicBool>,
        rate: Arc<LogRate>,
    ) -> Self {
        let log = Arc::new(LogBudget::new(plugin.clone(), rate));
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(log.clone(), "stdout"))
            .stderr(GuestOutput::new(log.clone(), "stderr"))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .instances(64)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            deadline: Instant::now(),
            stop,
            abandoned: Arc::default(),
            log,
            projection_db: None,
            reads: Vec::new(),
        }
    }

    /// Prepares a reused instance's store for its next call: a whole log budget.
    /// (The deadline is set per call; a call that was stopped or abandoned failed, and
    /// a failed instance is never reused.)
    pub(crate) fn start_call(&mut self) {
        self.log.start_call();
    }

    /// True once the running call must end.
    pub(crate) fn spent(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        // Asked at every epoch check of a running guest: no budget is built for it.
        self.stop.load(Relaxed) || self.abandoned.load(Relaxed) || Instant::now() >= self.deadline
    }

    fn budget(&self) -> Budget {
        Budget {
            deadline: self.deadline,
            stop: self.stop.clone(),
            abandoned: self.abandoned.clone(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}
impl types_v0_1::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if !self.log.admit(message.len()) {
            return Ok(());
        }
        let plugin = &*self.plugin;
        let message = clip(&message);
        // The request the call serves, if it serves one (a projection's batch does not).
        let request = crate::request_id::current();
        let request_id = request.as_deref();
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, request_id, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, request_id, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, request_id, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, request_id, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, request_id, "{message}"),
        }
        Ok(())
    }
}

impl sql_types::Host for HostState {}

impl projection_store::Host for HostState {
    fn execute(
        &mut self,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<u64, String>> {
        let budget = self.budget();
        let db = self.projection_db()?;
        guest_result(db.execute(&statement, &from_wit(params), &budget))
    }

    fn query(
        &mut self,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<sql_types::Rows, String>> {
        let budget = self.budget();
        let db = self.projection_db()?;
        guest_result(db.query(&statement, &from_wit(params), &budget).map(to_wit))
    }
}

impl read_store::Host for HostState {
    fn query(
        &mut self,
        projection: String,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<sql_types::Rows, String>> {
        let Some((_, pool)) = self.reads.iter().find(|(name, _)| *name == projection) else {
            return Ok(Err(format!(
                "projection {projection:?} is not among those this query handler declared, \
                 or has no active version"
            )));
        };
        let budget = self.budget();
        guest_result(
            pool.query(&statement, &from_wit(params), &budget)
                .map(to_wit),
        )
    }
}

// The host interfaces of 0.2.0 are those of 0.1.0 at a new version: the same
// functions over the same types (see `bindings`), so they do what 0.1.0's do.

impl log_v0_2::Host for HostState {
    fn log(&mut self, level: log_v0_2::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log_v0_2::Level::Trace => log::Level::Trace,
            log_v0_2::Level::Debug => log::Level::Debug,
            log_v0_2::Level::Info => log::Level::Info,
            log_v0_2::Level::Warn => log::Level::Warn,
            log_v0_2::Level::Error => log::Level::Error,
        };
        log::Host::log(self, level, message)
    }
}

impl projection_store_v0_2::Host for HostState {
    fn execute(
        &mut self,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<u64, String>> {
        projection_store::Host::execute(self, statement, params)
    }

    fn query(
        &mut self,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<sql_types::Rows, String>> {
        projection_store::Host::query(self, statement, params)
    }
}

impl read_store_v0_2::Host for HostState {
    fn query(
        &mut self,
        projection: String,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<sql_types::Rows, String>> {
        read_store::Host::query(self, projection, statement, params)
    }
}

impl HostState {
    /// The projection database of the batch being applied. Its absence means the
    /// host called a projection export outside a batch: a host bug, so a trap.
    fn projection_db(&mut self) -> wasmtime::Result<&mut ProjectionDb> {
        self.projection_db
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("projection store used outside a batch"))
    }
}

/// A statement's outcome as the guest sees it: SQL errors are the guest's to handle,
/// but a statement interrupted at the call's deadline ends the call (a trap that the
/// host reports as the deadline), so that no guest can ignore it and go on.
fn guest_result<T>(result: Result<T, ReadStoreError>) -> wasmtime::Result<Result<T, String>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(ReadStoreError::Interrupted) => Err(wasmtime::Trap::Interrupt.into()),
        Err(error) => Ok(Err(error.to_string())),
    }
}

/// A log line cut to [`MAX_LINE`] bytes, on a character boundary.
fn clip(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_LINE {
        return line.into();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &line[..end], line.len()).into()
}

/// What one plugin's calls together may write to the host's log: a token bucket of
/// bytes, refilled at [`LOG_RATE`]. It also keeps the count of dropped lines not yet
/// reported, so that the note about them is itself bounded.
#[derive(Debug)]
pub(crate) struct LogRate {
    state: Mutex<RateState>,
}

#[derive(Debug)]
struct RateState {
    tokens: f64,
    refilled: Instant,
    unreported_lines: u64,
    unreported_bytes: u64,
}

impl Default for LogRate {
    fn default() -> Self {
        LogRate {
            state: Mutex::new(RateState {
                tokens: LOG_BURST,
                refilled: Instant::now(),
                unreported_lines: 0,
                unreported_bytes: 0,
            }),
        }
    }
}

impl LogRate {
    /// Takes `bytes` from the bucket; false if it is empty.
    fn take(&self, bytes: usize) -> bool {
        let mut state = self.state.lock().expect("log rate lock");
        let now = Instant::now();
        let refill = now.duration_since(state.refilled).as_secs_f64() * LOG_RATE;
        state.tokens = (state.tokens + refill).min(LOG_BURST);
        state.refilled = now;
        let cost = bytes.max(LINE_COST) as f64;
        if state.tokens < cost {
            return false;
        }
        state.tokens -= cost;
        true
    }

    /// Adds dropped output to the unreported count; returns the totals to report now,
    /// if the bucket has room for the note.
    fn dropped(&self, lines: u64, bytes: u64) -> Option<(u64, u64)> {
        {
            let mut state = self.state.lock().expect("log rate lock");
            state.unreported_lines += lines;
            state.unreported_bytes += bytes;
        }
        if !self.take(LINE_COST) {
            return None;
        }
        let mut state = self.state.lock().expect("log rate lock");
        let totals = (state.unreported_lines, state.unreported_bytes);
        state.unreported_lines = 0;
        state.unreported_bytes = 0;
        Some(totals)
    }
}

/// What one call may still write to the host's log. Shared by the `log` import and
/// the stdout and stderr streams; the last owner reports what was dropped.
struct LogBudget {
    plugin: Arc<str>,
    rate: Arc<LogRate>,
    used: Mutex<LogUse>,
}

#[derive(Default)]
struct LogUse {
    lines: u32,
    bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl LogBudget {
    fn new(plugin: Arc<str>, rate: Arc<LogRate>) -> Self {
        LogBudget {
            plugin,
            rate,
            used: Mutex::default(),
        }
    }

    /// Counts a line of `bytes`; false if it is past the call's cap and must be dropped.
    fn admit(&self, bytes: usize) -> bool {
        let mut used = self.used.lock().expect("log budget lock");
        let bytes = bytes.min(MAX_LINE);
        if used.lines >= MAX_LOG_LINES
            || used.bytes + bytes > MAX_LOG_BYTES
            || !self.rate.take(bytes)
        {
            used.dropped_lines += 1;
            used.dropped_bytes += bytes as u64;
            return false;
        }
        used.lines += 1;
        used.bytes += bytes;
        true
    }
}

impl LogBudget {
    /// A new call begins on the same instance: it gets a whole budget, and what the
    /// last call had dropped is reported now.
    fn start_call(&self) {
        let mut used = self.used.lock().expect("log budget lock");
        self.report(&used);
        *used = LogUse::default();
    }

    /// Says how many lines were dropped, if any (within the plugin's rate of notes).
    fn report(&self, used: &LogUse) {
        if used.dropped_lines == 0 {
            return;
        }
        if let Some((lines, bytes)) = self.rate.dropped(used.dropped_lines, used.dropped_bytes) {
            tracing::warn!(
                target: "plugin",
                plugin = &*self.plugin,
                dropped_lines = lines,
                dropped_bytes = bytes,
                "the plugin logged more than {MAX_LOG_LINES} lines or {} KiB in a call, or more \
                 than {} KiB/s: {lines} lines ({bytes} bytes) were dropped",
                MAX_LOG_BYTES >> 10,
                LOG_RATE as u64 >> 10,
            );
        }
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        let used = std::mem::take(self.used.get_mut().expect("log budget lock"));
        self.report(&used);
    }
}

fn from_wit(params: Vec<sql_types::Value>) -> Vec<SqlValue> {
    params
        .into_iter()
        .map(|value| match value {
            sql_types::Value::Null => SqlValue::Null,
            sql_types::Value::Integer(i) => SqlValue::Integer(i),
            sql_types::Value::Real(r) => SqlValue::Real(r),
            sql_types::Value::Text(t) => SqlValue::Text(t),
            sql_types::Value::Blob(b) => SqlValue::Blob(b),
        })
        .collect()
}

fn to_wit(rows: Rows) -> sql_types::Rows {
    sql_types::Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|value| match value {
                        SqlValue::Null => sql_types::Value::Null,
                        SqlValue::Integer(i) => sql_types::Value::Integer(i),
                        SqlValue::Real(r) => sql_types::Value::Real(r),
                        SqlValue::Text(t) => sql_types::Value::Text(t),
                        SqlValue::Blob(b) => sql_types::Value::Blob(b),
                    })
                    .collect()
            })
            .collect(),
    }
}

/// A guest's stdout or stderr: complete lines go to `tracing`, tagged with the plugin.
#[derive(Clone)]
struct GuestOutput {
    log: Arc<LogBudget>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    fn new(log: Arc<LogBudget>, stream: &'static str) -> Self {
        GuestOutput {
            log,
            stream,
            pending: Arc::default(),
        }
    }

    /// Logs each complete line. A line longer than [`MAX_LINE`] is logged cut short
    /// (the rest of it is dropped), so that the host never holds more than one line.
    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut pending = self.pending.lock().expect("output lock");
        while !bytes.is_empty() {
            let (piece, complete, rest) = match bytes.iter().position(|b| *b == b'\n') {
                Some(end) => (&bytes[..end], true, &bytes[end + 1..]),
                None => (bytes, false, &[][..]),
            };
            let room = (MAX_LINE + 1).saturating_sub(pending.len());
            pending.extend_from_slice(&piece[..piece.len().min(room)]);
            if complete || pending.len() > MAX_LINE {
                let line = std::mem::take(&mut *pending);
                self.emit(&line[..line.len().min(MAX_LINE)]);
            }
            bytes = rest;
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.log.admit(line.len()) {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let request = crate::request_id::current();
        tracing::info!(
            target: "plugin",
            plugin = &*self.log.plugin,
            stream = self.stream,
            request_id = request.as_deref(),
            "{line}"
        );
    }
}

impl Drop for GuestOutput {
    fn drop(&mut self) {
        // The last clone flushes a final line that had no newline.
        if Arc::strong_count(&self.pending) == 1 {
            let pending = std::mem::take(&mut *self.pending.lock().expect("output lock"));
            if !pending.is_empty() {
                self.emit(&pending);
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
