//! Calling a query handler: one instance per query, reading through read-only pools
//! of the projections it declared.
//!
//! Instances are reused as command handlers' are ([`super::linked::Idle`]): an
//! instance whose query succeeded (an answer or a refusal) goes back to its handler's
//! idle list and answers another query of the same loaded plugin version, up to the
//! plugin's `reuse` bound of queries; a failed call (trap, deadline, stop, bad output)
//! drops it, so it is never called again. Between queries the instance keeps no access
//! to any read model: the read pools are handed over per query and taken back after.
//! Reuse spares instantiating per query (most of a large component's query cost); the
//! instance's memory bound holds across its queries, and its globals survive between
//! them (ARCHITECTURE.md says what authors must know).
//!
//! The `querier` interface is the same in both contracts but for its types, so a 0.1.0
//! answer is only lifted to the host's types.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::value::RawValue;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::types as wit;
use super::bindings::{v0_1, v0_2};
use super::deadline::set_deadline;
use super::describe::Description;
use super::error::{CallError, LoadError, Refusal};
use super::host::HostState;
use super::linked::{Idle, Linked, Live, World};
use super::runtime::Runtime;
use super::world::{Contract, PluginKind};
use crate::read_store::ReadPool;

/// A query handler plugin, linked and ready to instantiate.
pub struct QueryHandler {
    linked: Linked<Bindings>,
    idle: Idle<Bindings>,
}

/// The linked component, by contract.
enum Pre {
    V0_1(v0_1::query::QueryHandlerPre<HostState>),
    V0_2(v0_2::query::QueryHandlerPre<HostState>),
}

/// One instance's exports, by contract.
enum Bindings {
    V0_1(v0_1::query::QueryHandler),
    V0_2(v0_2::query::QueryHandler),
}

impl World for Bindings {
    const KIND: PluginKind = PluginKind::QueryHandler;
    const HANDLER: &'static str = "QueryHandler";
    type Pre = Pre;

    fn pre(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        match contract {
            Contract::V0_1 => v0_1::query::QueryHandlerPre::new(pre).map(Pre::V0_1),
            Contract::V0_2 => v0_2::query::QueryHandlerPre::new(pre).map(Pre::V0_2),
        }
    }

    fn instantiate(pre: &Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        Ok(match pre {
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate(store)?),
        })
    }

    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::PluginInfo> {
        match self {
            Bindings::V0_1(b) => b
                .tessera_plugin0_1_0_querier()
                .call_describe(store)
                .map(Into::into),
            Bindings::V0_2(b) => b.tessera_plugin0_2_0_querier().call_describe(store),
        }
    }
}

impl Bindings {
    fn handle(
        &self,
        store: &mut Store<HostState>,
        name: &str,
        params: &String,
    ) -> wasmtime::Result<Result<String, wit::Refusal>> {
        match self {
            Bindings::V0_1(b) => b
                .tessera_plugin0_1_0_querier()
                .call_handle(store, name, params)
                .map(|answer| answer.map_err(Into::into)),
            Bindings::V0_2(b) => b
                .tessera_plugin0_2_0_querier()
                .call_handle(store, name, params),
        }
    }
}

impl std::fmt::Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.linked.fmt(f)
    }
}

impl QueryHandler {
    /// Links a query handler plugin and asks it what it is.
    pub(super) fn load(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<(Description, Self), LoadError> {
        let (description, linked) = Linked::load(runtime, component, contract)?;
        let handler = QueryHandler {
            linked,
            idle: Idle::default(),
        };
        Ok((description, handler))
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> Contract {
        self.linked.contract()
    }

    /// Answers query `name` with `params` (a JSON object), reading only `reads`, on an
    /// idle instance or a fresh one. Returns the answer as JSON. Blocking.
    pub fn call(
        &self,
        name: &str,
        params: &str,
        reads: Vec<(String, Arc<ReadPool>)>,
        abandoned: Arc<AtomicBool>,
    ) -> Result<Result<Box<RawValue>, Refusal>, CallError> {
        let caller = &self.linked.caller;
        let _timer = caller.timer(crate::metrics::Call::Query);
        let fail = |e| caller.fail(e);
        let mut live = match self.idle.take() {
            Some(live) => live,
            None => {
                let mut store = caller.store();
                set_deadline(&mut store, caller.limits.deadline);
                let bindings = self.linked.instantiate(&mut store).map_err(fail)?;
                Live {
                    store,
                    bindings,
                    served: 0,
                }
            }
        };
        live.store.data_mut().reads = reads;
        live.store.data_mut().abandoned = abandoned;
        set_deadline(&mut live.store, caller.limits.deadline);
        // On any error below, `live` is dropped with its store: a failed instance is
        // never called again.
        let answer = live
            .bindings
            .handle(&mut live.store, name, &params.to_string())
            .map_err(fail)?;
        let answer = match answer {
            Ok(json) => Ok(crate::json::checked(json)
                .map_err(|e| caller.bad_output(format!("the answer: {e}")))?),
            Err(refusal) => Err(refusal.into()),
        };
        // An idle instance keeps no read model open (a swapped or retired projection's
        // database must close) and no tie to this request.
        let data = live.store.data_mut();
        data.reads = Vec::new();
        data.abandoned = Arc::default();
        self.idle.offer(live, caller.limits.reuse);
        Ok(answer)
    }

    /// Instances kept for reuse now (for tests).
    #[doc(hidden)]
    pub fn idle_instances(&self) -> usize {
        self.idle.len()
    }
}
