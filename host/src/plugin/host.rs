//! What a plugin instance sees of the host: its store data, the `log` import, and
//! stdout/stderr routed to `tracing`.
//!
//! Deny by construction: the WASI context grants no preopened directory, no
//! environment variable, no argument, no network address and no name lookup, and
//! stdin is closed. A guest that tries any of them gets an error from WASI, not access.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::command::tessera::plugin::{log, types};
use super::bindings::projection::tessera::plugin::{projection_store, sql_types};
use super::bindings::query::tessera::plugin::read_store;
use crate::read_store::{ProjectionDb, ReadPool, ReadStoreError, Rows, SqlValue};

/// The most bytes of one unterminated output line kept before it is logged anyway.
const MAX_LINE: usize = 4096;

/// The data of one plugin store: one call, or one short sequence of calls.
pub(crate) struct HostState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// For a projection's batch: its own database, inside the batch transaction.
    pub(crate) projection_db: Option<ProjectionDb>,
    /// For a query: the read pools of the projections it declared, by name.
    pub(crate) reads: Vec<(String, Arc<ReadPool>)>,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, max_memory: usize) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(plugin.clone(), "stdout"))
            .stderr(GuestOutput::new(plugin.clone(), "stderr"))
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
            projection_db: None,
            reads: Vec::new(),
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

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
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
        let db = self.projection_db()?;
        Ok(db
            .execute(&statement, &from_wit(params))
            .map_err(guest_message))
    }

    fn query(
        &mut self,
        statement: String,
        params: Vec<sql_types::Value>,
    ) -> wasmtime::Result<Result<sql_types::Rows, String>> {
        let db = self.projection_db()?;
        Ok(db
            .query(&statement, &from_wit(params))
            .map(to_wit)
            .map_err(guest_message))
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
        Ok(pool
            .query(&statement, &from_wit(params))
            .map(to_wit)
            .map_err(guest_message))
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

fn guest_message(error: ReadStoreError) -> String {
    error.to_string()
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
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        GuestOutput {
            plugin,
            stream,
            pending: Arc::default(),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().expect("output lock");
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if pending.len() > MAX_LINE {
            let line: Vec<u8> = pending.drain(..).collect();
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(target: "plugin", plugin = &*self.plugin, stream = self.stream, "{line}");
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
