//! The runtime every plugin of a host shares: the engine, the linkers of the worlds,
//! the epoch thread and the stop flag, and loading a `.wasm` into a [`Plugin`].
//!
//! Loading is all or nothing: [`Runtime::load`] compiles the component, finds its
//! world from its exports, links it against that world, asks it what it is and checks
//! the answer; a [`Plugin`] exists only once all of that succeeded. Stores are made
//! here too, so every call gets the same memory bound, deadline check and stop flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{v0_1, v0_2};
use super::command_handler::CommandHandler;
use super::deadline::{EpochTicker, ticks_until};
use super::describe::Description;
use super::error::LoadError;
use super::host::{HostState, LogRate};
use super::limits::{CallLimits, Limits};
use super::projection_handler::ProjectionHandler;
use super::query_handler::QueryHandler;
use super::world::{Contract, PluginKind, world_of};

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

/// The compiler, linkers and limits shared by every plugin of a host.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    /// What the engine's compiled code depends on, for a child compiler.
    spec: EngineSpec,
    limits: Limits,
    /// One linker per world, by contract.
    v0_1: Linkers,
    v0_2: Linkers,
    /// Advances the epoch for every store until the runtime is dropped.
    _ticker: EpochTicker,
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

/// A linker with WASI (which grants nothing, see `host.rs`) and a world's own imports.
fn linker(
    engine: &Engine,
    add_world: impl FnOnce(&mut Linker<HostState>) -> wasmtime::Result<()>,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    add_world(&mut linker)?;
    Ok(linker)
}

impl Runtime {
    pub fn new(limits: Limits) -> Result<Self, wasmtime::Error> {
        let (engine, spec) = engine(&limits)?;

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
        let ticker = EpochTicker::start(&engine)?;

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                spec,
                limits,
                v0_1,
                v0_2,
                _ticker: ticker,
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

    /// The flag [`Runtime::stop_calls`] sets, which tells an interrupt caused by the
    /// host stopping from a deadline.
    pub(super) fn stopping(&self) -> &AtomicBool {
        &self.inner.stop_calls
    }

    /// The linker of the world of `kind` in `contract`.
    pub(super) fn linker(&self, kind: PluginKind, contract: Contract) -> &Linker<HostState> {
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
        let compiled = Component::new(&self.inner.engine, bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")));
        // A compile allocates hundreds of MiB that it frees at the end; without this
        // the allocator keeps them, and a host that compiled one large component in
        // process stays that large. (A compile in a child process leaves nothing.)
        release_freed_memory();
        compiled
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The engine's settings, as a child compiler needs them.
    pub(crate) fn engine_spec(&self) -> EngineSpec {
        self.inner.spec
    }

    /// Links a compiled component against its world and checks its description.
    pub(crate) fn load_component(
        &self,
        component: &Component,
        digest: String,
    ) -> Result<Plugin, LoadError> {
        let (kind, contract) = world_of(&self.inner.engine, component)?;
        let (description, code) = match kind {
            PluginKind::CommandHandler => {
                let (description, handler) =
                    CommandHandler::load(self.clone(), component, contract)?;
                (description, PluginCode::CommandHandler(Arc::new(handler)))
            }
            PluginKind::Projection => {
                let (description, handler) =
                    ProjectionHandler::load(self.clone(), component, contract)?;
                (description, PluginCode::Projection(Arc::new(handler)))
            }
            PluginKind::QueryHandler => {
                let (description, handler) = QueryHandler::load(self.clone(), component, contract)?;
                (description, PluginCode::QueryHandler(Arc::new(handler)))
            }
        };
        Ok(Plugin {
            description,
            digest,
            code,
        })
    }

    /// A fresh store for one call of `plugin`: its memory bound, the stop flag, its
    /// log rate, and the deadline check.
    pub(super) fn store(
        &self,
        plugin: Arc<str>,
        limits: CallLimits,
        log_rate: Arc<LogRate>,
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

    pub(super) fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

/// Gives the memory the allocator holds free back to the system. glibc keeps what a
/// thread freed in that thread's arena; compiling a 10-40 MB component frees hundreds
/// of MiB across the compiler's threads, which would otherwise stay in the host's RSS.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Instances that can exist at once with the pooling allocator.
const POOLED_INSTANCES: u32 = 1000;
/// How much of a pooled linear memory is reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 2 << 20;
/// Decommits gathered before one system call does them all.
const DECOMMIT_BATCH: usize = 32;
/// A pooled memory slot's least reservation: every 32-bit address.
const FULL_RESERVATION: u64 = 4 << 30;
/// The unmapped region after each pooled memory: a load or store's constant offset
/// up to this needs no bounds check either (wasmtime's default on 64-bit hosts).
const GUARD: u64 = 32 << 20;

/// What a compiled component depends on beyond the wasmtime build: the engine
/// [`compile_component`] builds from it in a child process compiles code that the host's
/// engine, built from the same spec, loads (the compiled cache checks it all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSpec {
    /// With the pooling allocator, the largest memory a slot may hold, in bytes (its
    /// reservation is at least 4 GiB); `None`: instances allocated on demand, with
    /// wasmtime's default reservation.
    pub pooled_memory: Option<u64>,
}

/// The engine: epoch interruption for deadlines, and the pooling allocator (memory
/// and instance slots reserved once, so instantiating per call is cheap) unless the
/// address space is too small for its reservation, in which case instances are
/// allocated on demand.
fn engine(limits: &Limits) -> Result<(Engine, EngineSpec), wasmtime::Error> {
    if limits.pooling {
        // The largest memory any plugin may have bounds every pooled slot; each
        // slot's reservation is at least 4 GiB all the same (see `engine_for`).
        let largest = limits
            .per_plugin
            .values()
            .filter_map(|l| l.max_memory)
            .fold(limits.max_memory, usize::max);
        let spec = EngineSpec {
            pooled_memory: Some(largest as u64),
        };
        match engine_for(spec) {
            Ok(engine) => {
                tracing::debug!("plugin instances use the pooling allocator");
                return Ok((engine, spec));
            }
            Err(error) => tracing::warn!(
                error = %format!("{error:#}"),
                "the pooling allocator is unavailable here; allocating instances on demand"
            ),
        }
    }
    let spec = EngineSpec {
        pooled_memory: None,
    };
    Ok((engine_for(spec)?, spec))
}

/// The engine `spec` describes.
fn engine_for(spec: EngineSpec) -> Result<Engine, wasmtime::Error> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let Some(largest) = spec.pooled_memory else {
        return Engine::new(&config);
    };
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(POOLED_INSTANCES * 2)
        .total_memories(POOLED_INSTANCES * 2)
        .total_tables(POOLED_INSTANCES * 2)
        .total_stacks(POOLED_INSTANCES)
        .max_memory_size(largest as usize)
        // A slot going back to the pool is reset by rewriting the pages the
        // instance touched (found with PAGEMAP_SCAN where the kernel has it), up to
        // this much, instead of an madvise per instance: each madvise on a shared
        // address space costs a TLB shootdown on every core.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto)
        // What must still be decommitted is done in batches.
        .decommit_batch_size(DECOMMIT_BATCH);
    // Every slot reserves the whole 32-bit address space plus a guard region, so a
    // guest's loads and stores need no bounds check: one past its memory faults on
    // an unmapped page instead. Explicit checks made a warm call into a TypeScript
    // plugin (SpiderMonkey's interpreter, compiled to Wasm, does little but load and
    // store) about 30 % slower. It costs address space only,
    // about 8 TiB for the pool's slots, of the 128 TiB a 64-bit process has; where
    // the system refuses that, the caller falls back to instances on demand.
    config
        .memory_reservation(largest.max(FULL_RESERVATION))
        .memory_guard_size(GUARD);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Compiles the component `bytes` for the engine `spec` describes, into the file `out`:
/// what `tessera compile-component` does in a child process for the compiled cache
/// (`compiled_cache.rs`). `Err(Refused)` when wasmtime refuses the component (not
/// valid), `Err(Failed)` when this process could not do its part.
pub fn compile_component(
    spec: EngineSpec,
    bytes: &[u8],
    out: &std::path::Path,
) -> Result<(), CompileFailure> {
    let engine = engine_for(spec).map_err(|e| CompileFailure::Failed(format!("{e:#}")))?;
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|e| CompileFailure::Refused(format!("{e:#}")))?;
    std::fs::write(out, compiled).map_err(|e| CompileFailure::Failed(e.to_string()))
}

/// Why [`compile_component`] did not write its file.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// wasmtime refused the component: the plugin is not valid (its message says why).
    #[error("{0}")]
    Refused(String),
    /// Something else failed (the engine, the output file): nothing is said about
    /// the plugin; the host compiles it in its own process instead.
    #[error("{0}")]
    Failed(String),
}
