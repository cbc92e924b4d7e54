//! Calling a query handler: one fresh instance per query, reading through read-only
//! pools of the projections it declared.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::value::RawValue;
use wasmtime::component::Component;

use wasmtime::Store;

use super::bindings::{v0_1, v0_2};
use super::host::{HostState, LogRate};
use super::{
    CallError, CallLimits, Contract, Description, LoadError, PluginKind, Refusal, Runtime,
    describe_plugin, pre_instantiate, set_deadline, wit, wrong_world,
};
use crate::read_store::ReadPool;

/// A query handler plugin, linked and ready to instantiate.
pub struct QueryHandler {
    name: Arc<str>,
    runtime: Runtime,
    limits: CallLimits,
    log_rate: Arc<LogRate>,
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
            Bindings::V0_1(b) => b.tessera_plugin0_1_0_querier().call_describe(store),
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
                .call_handle(store, name, params),
            Bindings::V0_2(b) => b
                .tessera_plugin0_2_0_querier()
                .call_handle(store, name, params),
        }
    }
}

impl std::fmt::Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandler")
            .field("name", &self.name)
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
            name: Arc::from(kind.to_string()),
            limits: runtime.limits().describing(),
            log_rate: Arc::default(),
            runtime,
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
        let (description, name, limits) = describe_plugin(
            &self.runtime,
            PluginKind::QueryHandler,
            self.contract(),
            |store| self.pre.instantiate(store),
            |bindings, store| bindings.describe(store),
        )?;
        self.name = name;
        self.limits = limits;
        Ok(description)
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
        let mut store = self
            .runtime
            .store(self.name.clone(), self.limits, self.log_rate.clone());
        store.data_mut().reads = reads;
        store.data_mut().abandoned = abandoned;
        let deadline = self.limits.deadline;
        set_deadline(&mut store, deadline);
        let fail = |e| CallError::from_wasmtime(&self.name, deadline, self.runtime.stopping(), e);
        let bindings = self.pre.instantiate(&mut store).map_err(fail)?;
        let answer = bindings
            .handle(&mut store, name, &params.to_string())
            .map_err(fail)?;
        match answer {
            Ok(json) => crate::json::checked(json)
                .map(Ok)
                .map_err(|e| CallError::BadOutput {
                    plugin: self.name.to_string(),
                    reason: format!("the answer: {e}"),
                }),
            Err(refusal) => Ok(Err(refusal.into())),
        }
    }
}
