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
//! A query or a projection batch runs in a fresh instance, so no state leaks from one
//! request to the next; a command handler's instance may serve several commands of
//! the same plugin version in a row, up to its `reuse` bound
//! ([`CommandHandler::session`]). An instance whose call failed is dropped with its
//! store. Each call has a deadline (epoch interruption) and each instance a memory
//! bound, so a guest that loops or grows without end fails its own call alone.
//! Guests get no filesystem, network, environment or clock beyond WASI's defaults for
//! time and randomness (see `host.rs`).
//!
//! # Where things are
//!
//! - `runtime`: the engine, the linkers of the six worlds, the stop flag, stores, and
//!   loading a `.wasm` into a [`Plugin`].
//! - `world`: which world a component implements ([`PluginKind`], [`Contract`]) and
//!   linking it against that world's imports only.
//! - `linked`: `Linked<B>`, a plugin linked against world `B`, which the three handlers
//!   share; `caller`: the name, limits and log rate its calls share.
//! - `describe`: asking a plugin what it is and checking the answer ([`Description`]).
//! - `command_handler`, `projection_handler`, `query_handler`: what each world's calls
//!   do; `events`: handing events to a guest.
//! - `limits`, `deadline`, `error`: the limits calls run under, how a call is ended
//!   (deadline, stop, [`Abandon`]), and what goes wrong ([`LoadError`], [`CallError`],
//!   [`Refusal`]).
//! - `bindings`: the one `bindgen!` site; `host`: what a guest sees of the host.
//! - `catalog`, `directory`, `compiled_cache`, `compiles`, `watcher`: the set of
//!   plugins a host serves, the plugins folder and deploys, compiled components on
//!   disk, the compiles in progress (listed and logged), and hot reload.

mod bindings;
mod caller;
mod catalog;
mod command_handler;
mod compiled_cache;
mod compiles;
mod deadline;
mod describe;
mod directory;
mod error;
mod events;
mod host;
mod limits;
mod linked;
mod projection_handler;
mod query_handler;
mod runtime;
mod watcher;
mod world;

pub use catalog::{Catalog, CommandRoute, LoadFailure, ProjectionRoute, QueryRoute};
pub use command_handler::{Command, CommandHandler, CommandSession, Decision};
pub use compiled_cache::COMPILE_REFUSED_EXIT;
pub use deadline::Abandon;
pub use describe::{Description, ProjectionMode};
pub use directory::{DeployError, PluginListing, Plugins};
pub use error::{CallError, LoadError, Refusal};
pub use limits::{CallLimits, Limits, PluginLimits};
pub use projection_handler::{Batch, BatchError, ProjectionHandler};
pub use query_handler::QueryHandler;
pub use runtime::{CompileFailure, EngineSpec, Plugin, PluginCode, Runtime, compile_component};
pub use watcher::PluginWatcher;
pub use world::{Contract, PluginKind};
