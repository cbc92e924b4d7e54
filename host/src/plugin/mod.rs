//! Plugins: WebAssembly components compiled, checked and called under the host's rules.
//!
//! [`Runtime::load`] turns the bytes of a `.wasm` file into a [`Plugin`]: it compiles
//! the component, finds which Tessera world it implements from its exports (its kind,
//! and the version of the contract, [`Contract`]), links it against that world's
//! imports only (so a component of the wrong world fails here, not on first use), calls
//! its `describe` and checks the answer against the world. Nothing is registered until
//! all of that succeeded.
//!
//! Plugins of both contracts are served side by side. The handlers hold the bindings
//! of the contract their plugin implements and call it through one code path: 0.1.0
//! is called once per event, 0.2.0 once per fold or projection batch.
//!
//! Every call runs in a fresh instance ([`CommandHandler::session`]): no state leaks
//! from one request to the next, and an instance that trapped is dropped with its
//! store. Each call has a deadline (epoch interruption) and each instance a memory
//! bound, so a guest that loops or grows without end fails its own call alone.
//! Guests get no filesystem, network, environment or clock beyond WASI's defaults for
//! time and randomness (see [`host`]).

mod bindings;
mod caller;
mod catalog;
mod command_handler;
mod compiled_cache;
mod directory;
mod host;
mod projection_handler;
mod query_handler;
mod watcher;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

pub use catalog::{Catalog, CommandRoute, LoadFailure, ProjectionRoute, QueryRoute};
pub use command_handler::{Command, CommandHandler, CommandSession, Decision};
pub use directory::{DeployError, PluginListing, Plugins};
pub use projection_handler::{Batch, BatchError, ProjectionHandler};
pub use query_handler::QueryHandler;
pub use watcher::PluginWatcher;

use bindings::types as wit;
use host::HostState;

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The most ticks a running guest goes between two looks at its deadline and at the
/// host's stop flag.
const CHECK_TICKS: u64 = 10;

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long one call of a command handler may run.
    pub command_deadline: Duration,
    /// How long one call of a projection (`setup`, `apply-batch`, or a 0.1.0 `apply`)
    /// may run.
    pub projection_deadline: Duration,
    /// How long one call of a query handler may run.
    pub query_deadline: Duration,
    /// How long `describe` may run when a plugin is loaded.
    pub describe_deadline: Duration,
    /// The most linear memory one instance may have, in bytes.
    pub max_memory: usize,
    /// The largest a projection version's database may grow, in bytes.
    pub max_disk: u64,
    /// The most memory SQLite may hold in this process, for guests and host alike, in
    /// bytes (SQLite's hard heap limit: past it a statement fails).
    pub sqlite_heap: u64,
    /// Use the pooling allocator when the address space allows it.
    pub pooling: bool,
    /// How many commands one command handler instance may serve before it is dropped
    /// (it is dropped at once after a failed call). 0 or 1: a fresh instance for every
    /// command. Globals of a plugin survive between the commands an instance serves.
    pub instance_reuse: u32,
    /// Overrides for single plugins, by plugin name.
    pub per_plugin: HashMap<String, PluginLimits>,
}

/// Limits for one plugin that differ from its kind's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginLimits {
    /// How long one call may run.
    pub deadline: Option<Duration>,
    /// The most linear memory one instance may have, in bytes.
    pub max_memory: Option<usize>,
    /// For a projection: the largest its database may grow, in bytes.
    pub max_disk: Option<u64>,
    /// For a command handler: how many commands one instance may serve (0: fresh
    /// instances only).
    pub reuse: Option<u32>,
}

/// The limits one call runs under.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub deadline: Duration,
    pub max_memory: usize,
    pub max_disk: u64,
    /// How many calls in sequence one instance may serve (command handlers).
    pub reuse: u32,
}

impl Limits {
    /// What `describe` runs under, before the plugin's name is known.
    fn describing(&self) -> CallLimits {
        CallLimits {
            deadline: self.describe_deadline,
            max_memory: self.max_memory,
            max_disk: self.max_disk,
            reuse: 0,
        }
    }

    /// What the calls of plugin `name` of `kind` run under.
    fn for_plugin(&self, name: &str, kind: PluginKind) -> CallLimits {
        let default = match kind {
            PluginKind::CommandHandler => self.command_deadline,
            PluginKind::Projection => self.projection_deadline,
            PluginKind::QueryHandler => self.query_deadline,
        };
        let custom = self.per_plugin.get(name).cloned().unwrap_or_default();
        CallLimits {
            deadline: custom.deadline.unwrap_or(default),
            max_memory: custom.max_memory.unwrap_or(self.max_memory),
            max_disk: custom.max_disk.unwrap_or(self.max_disk),
            reuse: match kind {
                PluginKind::CommandHandler => custom.reuse.unwrap_or(self.instance_reuse),
                PluginKind::Projection | PluginKind::QueryHandler => 0,
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            command_deadline: Duration::from_secs(1),
            projection_deadline: Duration::from_secs(1),
            query_deadline: Duration::from_secs(1),
            describe_deadline: Duration::from_secs(1),
            max_memory: 64 << 20,
            max_disk: 1 << 30,
            sqlite_heap: 256 << 20,
            pooling: true,
            instance_reuse: 1000,
            per_plugin: HashMap::new(),
        }
    }
}

/// The version of the WIT contract (`tessera:plugin@…`) a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Contract {
    /// `tessera:plugin@0.1.0`: one call per event folded or projected.
    #[serde(rename = "0.1.0")]
    V0_1,
    /// `tessera:plugin@0.2.0`: a list of events folded, or a batch projected, per call.
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl Contract {
    /// Every contract the host serves, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The package version, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// The three kinds of plugin, one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    CommandHandler,
    Projection,
    QueryHandler,
}

impl PluginKind {
    /// The interface a component of this kind and contract exports.
    fn export(self, contract: Contract) -> String {
        let interface = match self {
            PluginKind::CommandHandler => "aggregate",
            PluginKind::Projection => "projector",
            PluginKind::QueryHandler => "querier",
        };
        format!("tessera:plugin/{interface}@{}", contract.version())
    }

    const ALL: [PluginKind; 3] = [
        PluginKind::CommandHandler,
        PluginKind::Projection,
        PluginKind::QueryHandler,
    ];
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::CommandHandler => "command-handler",
            PluginKind::Projection => "projection",
            PluginKind::QueryHandler => "query-handler",
        })
    }
}

/// What a plugin said about itself, checked against its world.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    /// The version of the contract it implements.
    pub contract: Contract,
    /// Command names, consumed event types, or query names.
    pub handles: Vec<String>,
    /// For a command handler: its aggregate type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_type: Option<String>,
    /// For a projection: its read model's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// For a projection: when it is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProjectionMode>,
    /// For a query handler: the projections it reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
}

/// When a projection is applied relative to the commands that feed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionMode {
    /// In the background; commands never wait.
    Async,
    /// Before a command's response is sent.
    Inline,
}

/// Why a handler refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed input: `(field, message)` pairs.
    Invalid(Vec<(String, String)>),
    /// A business rule said no.
    Rejected { code: String, message: String },
    /// What was asked for does not exist.
    NotFound(String),
}

impl From<wit::Refusal> for Refusal {
    fn from(refusal: wit::Refusal) -> Self {
        match refusal {
            wit::Refusal::Invalid(fields) => {
                Refusal::Invalid(fields.into_iter().map(|f| (f.field, f.message)).collect())
            }
            wit::Refusal::Rejected(rejection) => Refusal::Rejected {
                code: rejection.code,
                message: rejection.message,
            },
            wit::Refusal::NotFound(message) => Refusal::NotFound(message),
        }
    }
}

/// A loaded plugin: checked, linked, ready to call.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub description: Description,
    /// sha256 of the `.wasm` bytes, hex.
    pub digest: String,
    pub code: PluginCode,
}

/// The callable part of a plugin, by kind.
#[derive(Debug, Clone)]
pub enum PluginCode {
    CommandHandler(Arc<CommandHandler>),
    Projection(Arc<ProjectionHandler>),
    QueryHandler(Arc<QueryHandler>),
}

/// Why a `.wasm` could not be loaded. Report it with the file; the previous version of
/// the plugin, if any, stays in service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component implements no Tessera world (it exports none of {expected})")]
    UnknownWorld { expected: String },
    #[error("the component does not fit the {kind} world: {reason}")]
    WrongWorld { kind: PluginKind, reason: String },
    #[error(
        "the component imports {import}, which the host does not offer: a plugin of the \
         {kind} world may import only that world's tessera:plugin interfaces and WASI's \
         io, clocks, random, cli, filesystem and sockets (which grant nothing). {hint}"
    )]
    UnofferedImport {
        kind: PluginKind,
        import: String,
        hint: &'static str,
    },
    #[error("describe failed: {0}")]
    DescribeFailed(#[from] CallError),
    #[error("describe returned an invalid description: {0}")]
    BadDescription(String),
}

/// A call into a plugin failed. The instance is dropped; the host keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (a panic, an out-of-bounds access, memory exhausted...).
    #[error("plugin {plugin} trapped: {reason}")]
    Trapped { plugin: String, reason: String },
    /// The guest ran past its deadline and was interrupted.
    #[error("plugin {plugin} ran past its {deadline:?} deadline")]
    DeadlineExceeded { plugin: String, deadline: Duration },
    /// The guest returned something the host cannot use (e.g. event data that is not
    /// JSON). A bug in the plugin.
    #[error("plugin {plugin} returned malformed output: {reason}")]
    BadOutput { plugin: String, reason: String },
    /// The host is shutting down and ended the call; try again on a running host.
    #[error("plugin {plugin}'s call was ended: the host is shutting down")]
    Stopped { plugin: String },
}

impl CallError {
    fn from_wasmtime(
        plugin: &str,
        deadline: Duration,
        stop: &AtomicBool,
        error: wasmtime::Error,
    ) -> Self {
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            if stop.load(Ordering::Relaxed) {
                return CallError::Stopped {
                    plugin: plugin.to_string(),
                };
            }
            return CallError::DeadlineExceeded {
                plugin: plugin.to_string(),
                deadline,
            };
        }
        CallError::Trapped {
            plugin: plugin.to_string(),
            reason: format!("{error:#}"),
        }
    }
}

/// Ends a call when dropped: held by whoever waits for the call's answer, so that a
/// call nobody waits for any more (its client went away) stops at once rather than
/// at its deadline.
#[derive(Debug, Default)]
pub struct Abandon(Arc<AtomicBool>);

impl Abandon {
    /// The flag to hand to the call.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The compiler, linkers and limits shared by every plugin of a host.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    limits: Limits,
    /// One linker per world, by contract.
    v0_1: Linkers,
    v0_2: Linkers,
    stop_ticker: Arc<AtomicBool>,
    /// Set when the host stops: every call running ends at once, and none starts.
    stop_calls: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// The linkers of one contract's three worlds.
struct Linkers {
    command: Linker<HostState>,
    projection: Linker<HostState>,
    query: Linker<HostState>,
}

impl Linkers {
    fn get(&self, kind: PluginKind) -> &Linker<HostState> {
        match kind {
            PluginKind::CommandHandler => &self.command,
            PluginKind::Projection => &self.projection,
            PluginKind::QueryHandler => &self.query,
        }
    }
}

/// A linker with WASI (which grants nothing, see [`host`]) and a world's own imports.
fn linker(
    engine: &Engine,
    add_world: impl FnOnce(&mut Linker<HostState>) -> wasmtime::Result<()>,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    add_world(&mut linker)?;
    Ok(linker)
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(limits: Limits) -> Result<Self, wasmtime::Error> {
        let engine = engine(&limits)?;

        use bindings::{v0_1, v0_2};
        let v0_1 = Linkers {
            command: linker(&engine, |l| {
                v0_1::command::CommandHandler::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
            projection: linker(&engine, |l| {
                v0_1::projection::Projection::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
            query: linker(&engine, |l| {
                v0_1::query::QueryHandler::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
        };
        let v0_2 = Linkers {
            command: linker(&engine, |l| {
                v0_2::command::CommandHandler::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
            projection: linker(&engine, |l| {
                v0_2::projection::Projection::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
            query: linker(&engine, |l| {
                v0_2::query::QueryHandler::add_to_linker::<_, HasSelf<HostState>>(l, |s| s)
            })?,
        };

        // Deadlines count epoch ticks; one thread advances the epoch for all stores.
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(wasmtime::Error::from)?;

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                limits,
                v0_1,
                v0_2,
                stop_ticker,
                stop_calls: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    /// Ends every plugin call now, and every later one as soon as it starts: guests
    /// trap at their next epoch check and SQL statements at their next progress check.
    /// For shutting down; there is no way back.
    pub fn stop_calls(&self) {
        self.inner.stop_calls.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> &AtomicBool {
        &self.inner.stop_calls
    }

    /// The linker of the world of `kind` in `contract`.
    fn linker(&self, kind: PluginKind, contract: Contract) -> &Linker<HostState> {
        match contract {
            Contract::V0_1 => self.inner.v0_1.get(kind),
            Contract::V0_2 => self.inner.v0_2.get(kind),
        }
    }

    /// Compiles and checks a plugin. CPU-heavy (compilation): call it off the async
    /// runtime's worker threads.
    pub fn load(&self, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self.compile(bytes)?;
        self.load_component(&component, digest)
    }

    /// Compiles a component without checking what it is.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::new(&self.inner.engine, bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Links a compiled component against its world and checks its description.
    pub(crate) fn load_component(
        &self,
        component: &Component,
        digest: String,
    ) -> Result<Plugin, LoadError> {
        let (kind, contract) = self.world_of(component)?;
        let (description, code) = match kind {
            PluginKind::CommandHandler => {
                let mut handler = CommandHandler::link(self.clone(), component, contract)?;
                let description = handler.describe()?;
                (description, PluginCode::CommandHandler(Arc::new(handler)))
            }
            PluginKind::Projection => {
                let mut handler = ProjectionHandler::link(self.clone(), component, contract)?;
                let description = handler.describe()?;
                (description, PluginCode::Projection(Arc::new(handler)))
            }
            PluginKind::QueryHandler => {
                let mut handler = QueryHandler::link(self.clone(), component, contract)?;
                let description = handler.describe()?;
                (description, PluginCode::QueryHandler(Arc::new(handler)))
            }
        };
        Ok(Plugin {
            description,
            digest,
            code,
        })
    }

    /// The world a component implements, told by the Tessera interface it exports:
    /// its kind, and the version of the contract.
    fn world_of(&self, component: &Component) -> Result<(PluginKind, Contract), LoadError> {
        let exports: HashSet<String> = component
            .component_type()
            .exports(&self.inner.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let worlds = || {
            Contract::ALL
                .into_iter()
                .flat_map(|contract| PluginKind::ALL.map(|kind| (kind, contract)))
        };
        let mut found =
            worlds().filter(|(kind, contract)| exports.contains(&kind.export(*contract)));
        match (found.next(), found.next()) {
            (Some(world), None) => Ok(world),
            (Some((kind, contract)), Some((other, other_contract))) => Err(LoadError::WrongWorld {
                kind,
                reason: if kind == other {
                    format!(
                        "it exports the {kind} interface of both contracts {contract} and \
                         {other_contract}; a plugin implements one"
                    )
                } else {
                    format!("it also exports the {other} interface; a plugin has one kind")
                },
            }),
            (None, _) => Err(LoadError::UnknownWorld {
                expected: worlds()
                    .map(|(kind, contract)| kind.export(contract))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn store(
        &self,
        plugin: Arc<str>,
        limits: CallLimits,
        log_rate: Arc<host::LogRate>,
    ) -> Store<HostState> {
        let mut store = Store::new(
            &self.inner.engine,
            HostState::new(
                plugin,
                limits.max_memory,
                self.inner.stop_calls.clone(),
                log_rate,
            ),
        );
        store.limiter(|state| &mut state.limits);
        // The epoch deadline is only when to look again: the call's real deadline is
        // an instant (which SQL statements share), and the host's stop flag ends it too.
        store.epoch_deadline_callback(|context| {
            let state = context.data();
            if state.spent() {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(wasmtime::UpdateDeadline::Continue(ticks_until(
                state.deadline,
            )))
        });
        store
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

/// Instances that can exist at once with the pooling allocator.
const POOLED_INSTANCES: u32 = 1000;
/// How much of a pooled linear memory is reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 2 << 20;
/// Decommits gathered before one system call does them all.
const DECOMMIT_BATCH: usize = 32;

/// The engine: epoch interruption for deadlines, and the pooling allocator (memory
/// and instance slots reserved once, so instantiating per call is cheap) unless the
/// address space is too small for its reservation, in which case instances are
/// allocated on demand.
fn engine(limits: &Limits) -> Result<Engine, wasmtime::Error> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if limits.pooling {
        // Each pooled memory slot reserves address space for the largest memory any
        // plugin may have, not wasmtime's default 4 GiB, so that many hosts (tests)
        // fit in one process; accesses are then bounds-checked explicitly.
        let largest = limits
            .per_plugin
            .values()
            .filter_map(|l| l.max_memory)
            .fold(limits.max_memory, usize::max);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 2)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 2)
            .total_stacks(POOLED_INSTANCES)
            .max_memory_size(largest)
            // A slot going back to the pool is reset by rewriting the pages the
            // instance touched (found with PAGEMAP_SCAN where the kernel has it), up to
            // this much, instead of an madvise per instance: each madvise on a shared
            // address space costs a TLB shootdown on every core.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            // What must still be decommitted is done in batches.
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut pooled = config.clone();
        pooled
            .memory_reservation(largest as u64)
            .memory_guard_size(64 << 10);
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => {
                tracing::debug!("plugin instances use the pooling allocator");
                return Ok(engine);
            }
            Err(error) => tracing::warn!(
                error = %format!("{error:#}"),
                "the pooling allocator is unavailable here; allocating instances on demand"
            ),
        }
    }
    Engine::new(&config)
}

/// Pre-instantiates `component` with the linker of its world. A failure means the
/// component imports something that world does not offer: it is of another world.
fn pre_instantiate(
    linker: &Linker<HostState>,
    component: &Component,
    kind: PluginKind,
) -> Result<wasmtime::component::InstancePre<HostState>, LoadError> {
    linker.instantiate_pre(component).map_err(|e| {
        // wasmtime's message names what is missing in linker terms ("resource
        // implementation is missing"); an import from outside what plugins get is said
        // plainly, with how to build without it.
        match unoffered_import(component) {
            Some(import) => LoadError::UnofferedImport {
                kind,
                hint: build_hint(&import),
                import,
            },
            None => wrong_world(kind, e),
        }
    })
}

/// The interface namespaces a plugin may import: the contract's own, and the WASI
/// interfaces the host links (see [`linker`]); anything else is never offered.
const OFFERED_IMPORTS: &[&str] = &[
    "tessera:plugin/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The first import of `component` outside [`OFFERED_IMPORTS`], by name.
fn unoffered_import(component: &Component) -> Option<String> {
    let engine = component.engine();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .find(|name| {
            !OFFERED_IMPORTS
                .iter()
                .any(|offered| name.starts_with(offered))
        })
}

/// How to build a component without `import`.
fn build_hint(import: &str) -> &'static str {
    if import.starts_with("wasi:http/") {
        "componentize-js adds wasi:http for fetch() unless told not to: build with \
         `jco componentize -d http -d fetch-event` (or `disableFeatures: [\"http\", \
         \"fetch-event\"]`), as the TypeScript SDK's `npm run build` does \
         (docs/plugins/typescript.md)."
    } else {
        "Build the component against its world in wit/tessera.wit, without that import."
    }
}

fn wrong_world(kind: PluginKind, error: wasmtime::Error) -> LoadError {
    LoadError::WrongWorld {
        kind,
        reason: format!("{error:#}"),
    }
}

/// Starts a call's deadline: `deadline` from now, for the guest's code and its SQL.
fn set_deadline(store: &mut Store<HostState>, deadline: Duration) {
    let at = std::time::Instant::now() + deadline;
    store.data_mut().deadline = at;
    store.set_epoch_deadline(ticks_until(at));
}

/// Epoch ticks until `at`, rounded up, but at most [`CHECK_TICKS`].
fn ticks_until(at: std::time::Instant) -> u64 {
    let left = at.saturating_duration_since(std::time::Instant::now());
    let ticks = left.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64;
    ticks.clamp(1, CHECK_TICKS)
}

/// Checks what every kind's description must satisfy.
fn check_description(
    info: wit::PluginInfo,
    kind: PluginKind,
    contract: Contract,
) -> Result<Description, LoadError> {
    let bad = |reason: String| Err(LoadError::BadDescription(reason));
    if !is_name(&info.name) {
        return bad(format!(
            "name {} must be 1-64 lowercase letters, digits or dashes",
            quote(&info.name)
        ));
    }
    if info.handles.is_empty() {
        return bad("it handles nothing".into());
    }
    let mut seen = HashSet::new();
    for handled in &info.handles {
        if handled.is_empty() || handled.len() > 128 || handled.contains('/') {
            return bad(format!("{} is not a valid name to handle", quote(handled)));
        }
        if !seen.insert(handled) {
            return bad(format!("{} is listed twice", quote(handled)));
        }
    }
    let mut description = Description {
        name: info.name,
        version: info.version,
        kind,
        contract,
        handles: info.handles,
        aggregate_type: None,
        schema_version: None,
        mode: None,
        reads: None,
    };
    let declared = match info.details {
        wit::PluginDetails::CommandHandler(details) => {
            if !is_name(&details.aggregate_type) {
                return bad(format!(
                    "aggregate type {} must be 1-64 lowercase letters, digits or dashes",
                    quote(&details.aggregate_type)
                ));
            }
            description.aggregate_type = Some(details.aggregate_type);
            PluginKind::CommandHandler
        }
        wit::PluginDetails::Projection(details) => {
            description.schema_version = Some(details.schema_version);
            description.mode = Some(match details.mode {
                wit::ProjectionMode::Async => ProjectionMode::Async,
                wit::ProjectionMode::Inline => ProjectionMode::Inline,
            });
            PluginKind::Projection
        }
        wit::PluginDetails::QueryHandler(details) => {
            if details.reads.is_empty() {
                return bad("a query handler must read at least one projection".into());
            }
            if let Some(name) = details.reads.iter().find(|name| !is_name(name)) {
                return bad(format!("{} is not a projection name", quote(name)));
            }
            description.reads = Some(details.reads);
            PluginKind::QueryHandler
        }
    };
    if declared != kind {
        return bad(format!(
            "it describes itself as a {declared} but implements the {kind} world"
        ));
    }
    Ok(description)
}

/// Quotes text a plugin sent, cut short: a plugin must not fill logs or listings.
fn quote(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
