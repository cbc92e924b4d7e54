//! Calling a query handler: one fresh instance per query, reading through read-only
//! pools of the projections it declared.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::value::RawValue;
use wasmtime::component::Component;

use wasmtime::Store;

use super::bindings::{v0_1, v0_2};
use super::caller::Caller;
use super::host::HostState;
use super::{
    CallError, Contract, Description, LoadError, PluginKind, Refusal, Runtime, pre_instantiate,
    set_deadline, wit, wrong_world,
};
use crate::read_store::ReadPool;

/// A query handler plugin, linked and ready to instantiate.
pub struct QueryHandler {
    caller: Caller,
    pre: Pre,
}

/// The linked component, by contract. The `querier` interface is the same in both.
enum Pre {
    V0_1(v0_1::query::QueryHandlerPre<HostState>),
    V0_2(v0_2::query::QueryHandlerPre<HostState>),
}

/// One instance's exports, by contract.
enum Bindings {
    V0_1(v0_1::query::QueryHandler),
    V0_2(v0_2::query::QueryHandler),
}

impl Pre {
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Bindings {
    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::PluginInfo> {
        match self {
            Bindings::V0_1(b) => b
                .tessera_plugin0_1_0_querier()
                .call_describe(store)
                .map(Into::into),
            Bindings::V0_2(b) => b.tessera_plugin0_2_0_querier().call_describe(store),
        }
    }

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
        f.debug_struct("QueryHandler")
            .field("name", &self.caller.name)
            .field("contract", &self.contract())
            .finish_non_exhaustive()
    }
}

impl QueryHandler {
    pub(super) fn link(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<Self, LoadError> {
        let kind = PluginKind::QueryHandler;
        let pre = pre_instantiate(runtime.linker(kind, contract), component, kind)?;
        let pre = match contract {
            Contract::V0_1 => v0_1::query::QueryHandlerPre::new(pre).map(Pre::V0_1),
            Contract::V0_2 => v0_2::query::QueryHandlerPre::new(pre).map(Pre::V0_2),
        }
        .map_err(|e| wrong_world(kind, e))?;
        Ok(QueryHandler {
            caller: Caller::new(runtime, kind),
            pre,
        })
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> Contract {
        match self.pre {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    pub(super) fn describe(&mut self) -> Result<Description, LoadError> {
        let contract = self.contract();
        self.caller.describe(
            PluginKind::QueryHandler,
            contract,
            |store| self.pre.instantiate(store),
            |bindings, store| bindings.describe(store),
        )
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
        let _timer = self.caller.timer(crate::metrics::Call::Query);
        let mut store = self.caller.store();
        store.data_mut().reads = reads;
        store.data_mut().abandoned = abandoned;
        set_deadline(&mut store, self.caller.limits.deadline);
        let fail = |e| self.caller.fail(e);
        let bindings = self.pre.instantiate(&mut store).map_err(fail)?;
        let answer = bindings
            .handle(&mut store, name, &params.to_string())
            .map_err(fail)?;
        match answer {
            Ok(json) => crate::json::checked(json)
                .map(Ok)
                .map_err(|e| self.caller.bad_output(format!("the answer: {e}"))),
            Err(refusal) => Ok(Err(refusal.into())),
        }
    }
}
