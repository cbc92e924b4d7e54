//! A handler linked to its world: what the three kinds of handler share.
//!
//! [`Linked<B>`] is generic over `B`, a handler's bindings of its world (an enum with
//! one variant per contract, see [`World`]). It holds the component linked against
//! that world's imports, with its exports looked up once, the contract it implements,
//! and the [`Caller`] its calls share (name, limits, runtime, log rate). Linking,
//! instantiating, `describe` (in [`super::describe`]) and `Debug` are written once
//! here; each handler module keeps only what its world's calls do.
//!
//! Linking fails for a component that does not fit the world, before any of its code
//! runs.
//!
//! [`Idle<B>`] is the list of instances a handler keeps for reuse (command handlers and
//! query handlers): one list per loaded plugin version, so an instance never serves
//! another plugin or version, and only instances whose every call succeeded go back
//! to it, each for at most the plugin's `reuse` bound of calls.

use std::sync::Mutex;

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::types as wit;
use super::caller::Caller;
use super::describe::Description;
use super::error::LoadError;
use super::host::HostState;
use super::runtime::Runtime;
use super::world::{Contract, PluginKind, pre_instantiate, wrong_world};

/// One world's bindings, implemented by a handler's enum of one instance's exports
/// by contract.
pub(super) trait World: Sized {
    /// The kind of plugin that implements the world.
    const KIND: PluginKind;
    /// The handler type's name, which its `Debug` shows.
    const HANDLER: &'static str;
    /// The component linked against the world (an enum by contract): ready to
    /// instantiate, its exports looked up once.
    type Pre;

    /// Wraps `pre` in the world's typed bindings of `contract`. Fails when the
    /// component lacks an export the world requires.
    fn pre(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;

    /// A new instance in `store`, and its exports.
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;

    /// Calls the world's `describe`; a 0.1.0 answer is lifted to the host's types.
    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::PluginInfo>;
}

/// A plugin of world `B`, linked and ready to instantiate.
pub(super) struct Linked<B: World> {
    /// What every call of the plugin shares; renamed and given the plugin's limits
    /// once `describe` has answered.
    pub(super) caller: Caller,
    pre: B::Pre,
    contract: Contract,
}

impl<B: World> Linked<B> {
    /// Links `component` against the world of `B` in `contract` and asks it what it
    /// is (see [`Linked::describe`]).
    pub(super) fn load(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<(Description, Self), LoadError> {
        let mut linked = Self::link(runtime, component, contract)?;
        let description = linked.describe()?;
        Ok((description, linked))
    }

    /// Links `component` against the world of `B` in `contract`, named by its kind
    /// until it is described.
    fn link(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<Self, LoadError> {
        let pre = pre_instantiate(runtime.linker(B::KIND, contract), component, B::KIND)?;
        let pre = B::pre(contract, pre).map_err(|e| wrong_world(B::KIND, e))?;
        Ok(Linked {
            caller: Caller::new(runtime, B::KIND),
            pre,
            contract,
        })
    }

    /// The version of the contract the plugin implements.
    pub(super) fn contract(&self) -> Contract {
        self.contract
    }

    /// A new instance in `store`. The caller sets the deadline first: instantiation
    /// runs the guest's start code.
    pub(super) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<B> {
        let _timer = self.caller.timer(crate::metrics::Call::Instantiate);
        B::instantiate(&self.pre, store)
    }
}

impl<B: World> std::fmt::Debug for Linked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(B::HANDLER)
            .field("name", &self.caller.name)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

/// The most idle instances one handler keeps for reuse.
const MAX_IDLE: usize = 16;

/// An instance and how many calls (commands, queries) it has served.
pub(super) struct Live<B> {
    pub(super) store: Store<HostState>,
    pub(super) bindings: B,
    pub(super) served: u32,
}

/// Instances of one handler (one loaded plugin version) that served their calls well
/// and may serve more.
pub(super) struct Idle<B>(Mutex<Vec<Live<B>>>);

impl<B> Default for Idle<B> {
    fn default() -> Self {
        Idle(Mutex::new(Vec::new()))
    }
}

impl<B> Idle<B> {
    /// An idle instance, its store ready for a new call (a whole log budget), if any.
    pub(super) fn take(&self) -> Option<Live<B>> {
        let mut live = self.0.lock().expect("idle instances lock").pop()?;
        live.store.data_mut().start_call();
        Some(live)
    }

    /// Offers an instance that has just served one more call, with every call of it
    /// successful, for the next: kept while it has served fewer than `reuse` calls and
    /// the list has room; dropped otherwise. A failed instance must not be offered.
    pub(super) fn offer(&self, mut live: Live<B>, reuse: u32) {
        live.served += 1;
        if live.served >= reuse {
            return;
        }
        let mut idle = self.0.lock().expect("idle instances lock");
        if idle.len() < MAX_IDLE {
            idle.push(live);
        }
    }

    /// How many instances are kept now.
    pub(super) fn len(&self) -> usize {
        self.0.lock().expect("idle instances lock").len()
    }
}
