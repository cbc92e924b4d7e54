//! Calling a query handler: one fresh instance per query, reading through read-only
//! pools of the projections it declared.
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
use super::linked::{Linked, World};
use super::runtime::Runtime;
use super::world::{Contract, PluginKind};
use crate::read_store::ReadPool;

/// A query handler plugin, linked and ready to instantiate.
pub struct QueryHandler {
    linked: Linked<Bindings>,
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
        Ok((description, QueryHandler { linked }))
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> Contract {
        self.linked.contract()
    }

    /// Answers query `name` with `params` (a JSON object), reading only `reads`.
    /// Returns the answer as JSON. Blocking.
    pub fn call(
        &self,
        name: &str,
        params: &str,
        reads: Vec<(String, Arc<ReadPool>)>,
        abandoned: Arc<AtomicBool>,
    ) -> Result<Result<Box<RawValue>, Refusal>, CallError> {
        let caller = &self.linked.caller;
        let _timer = caller.timer(crate::metrics::Call::Query);
        let mut store = caller.store();
        store.data_mut().reads = reads;
        store.data_mut().abandoned = abandoned;
        set_deadline(&mut store, caller.limits.deadline);
        let fail = |e| caller.fail(e);
        let bindings = self.linked.instantiate(&mut store).map_err(fail)?;
        let answer = bindings
            .handle(&mut store, name, &params.to_string())
            .map_err(fail)?;
        match answer {
            Ok(json) => crate::json::checked(json)
                .map(Ok)
                .map_err(|e| caller.bad_output(format!("the answer: {e}"))),
            Err(refusal) => Ok(Err(refusal.into())),
        }
    }
}
