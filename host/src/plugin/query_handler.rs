//! Calling a query handler: one fresh instance per query, reading through read-only
//! pools of the projections it declared.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::value::RawValue;
use wasmtime::component::Component;

use super::bindings::query::QueryHandlerPre;
use super::host::{HostState, LogRate};
use super::{
    CallError, CallLimits, Description, LoadError, PluginKind, Refusal, Runtime, describe_plugin,
    pre_instantiate, set_deadline, wrong_world,
};
use crate::read_store::ReadPool;

/// A query handler plugin, linked and ready to instantiate.
pub struct QueryHandler {
    name: Arc<str>,
    runtime: Runtime,
    limits: CallLimits,
    log_rate: Arc<LogRate>,
    pre: QueryHandlerPre<HostState>,
}

impl std::fmt::Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl QueryHandler {
    pub(super) fn link(runtime: Runtime, component: &Component) -> Result<Self, LoadError> {
        let pre = pre_instantiate(
            &runtime.inner.query_linker,
            component,
            PluginKind::QueryHandler,
        )?;
        let pre =
            QueryHandlerPre::new(pre).map_err(|e| wrong_world(PluginKind::QueryHandler, e))?;
        Ok(QueryHandler {
            name: Arc::from(PluginKind::QueryHandler.to_string()),
            limits: runtime.limits().describing(),
            log_rate: Arc::default(),
            runtime,
            pre,
        })
    }

    pub(super) fn describe(&mut self) -> Result<Description, LoadError> {
        let (description, name, limits) = describe_plugin(
            &self.runtime,
            PluginKind::QueryHandler,
            |store| self.pre.instantiate(store),
            |bindings, store| bindings.tessera_plugin_querier().call_describe(store),
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
            .tessera_plugin_querier()
            .call_handle(&mut store, name, &params.to_string())
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
