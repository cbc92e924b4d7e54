//! What every kind of handler keeps to make its calls and to judge their outcome: the
//! plugin's name (its kind's name until `describe` has answered), the limits its calls
//! run under, the runtime, and the plugin's log rate.
//!
//! One type for the three handlers, so that a store is set up, a failure told apart
//! (trap, deadline, shutdown) and `describe` checked the same way whatever the kind.

use std::sync::Arc;

use wasmtime::Store;

use super::host::{HostState, LogRate};
use super::{
    CallError, CallLimits, Contract, Description, LoadError, PluginKind, Runtime,
    check_description, set_deadline, wit,
};

#[derive(Clone)]
pub(super) struct Caller {
    pub(super) name: Arc<str>,
    pub(super) limits: CallLimits,
    runtime: Runtime,
    log_rate: Arc<LogRate>,
}

impl Caller {
    /// A caller for a plugin of `kind` not yet described: named by its kind, under the
    /// describe limits.
    pub(super) fn new(runtime: Runtime, kind: PluginKind) -> Self {
        Caller {
            name: Arc::from(kind.to_string()),
            limits: runtime.limits().describing(),
            runtime,
            log_rate: Arc::default(),
        }
    }

    /// A fresh store for one call (or one short sequence of calls).
    pub(super) fn store(&self) -> Store<HostState> {
        self.runtime
            .store(self.name.clone(), self.limits, self.log_rate.clone())
    }

    /// What a failed guest call means for the host: a trap, the deadline, or the
    /// host stopping.
    pub(super) fn fail(&self, error: wasmtime::Error) -> CallError {
        let error = CallError::from_wasmtime(
            &self.name,
            self.limits.deadline,
            self.runtime.stopping(),
            error,
        );
        crate::metrics::call_failed(&self.name, &error);
        error
    }

    /// The guest returned something the host cannot use.
    pub(super) fn bad_output(&self, reason: String) -> CallError {
        let error = CallError::BadOutput {
            plugin: self.name.to_string(),
            reason,
        };
        crate::metrics::call_failed(&self.name, &error);
        error
    }

    /// Times a call (`tessera_plugin_call_duration_seconds`) until the timer is dropped.
    pub(super) fn timer(&self, call: crate::metrics::Call) -> crate::metrics::CallTimer {
        crate::metrics::CallTimer::start(&self.name, call)
    }

    /// Calls `describe` in a fresh instance under the describe limits, checks the
    /// answer against `kind`, and from then on names the plugin after it and calls it
    /// under its own limits.
    pub(super) fn describe<B>(
        &mut self,
        kind: PluginKind,
        contract: Contract,
        instantiate: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<B>,
        describe: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<wit::PluginInfo>,
    ) -> Result<Description, LoadError> {
        let mut store = self
            .runtime
            .store(self.name.clone(), self.limits, Arc::default());
        set_deadline(&mut store, self.limits.deadline);
        let mut timer = self.timer(crate::metrics::Call::Describe);
        let bindings = instantiate(&mut store).map_err(|e| self.fail(e))?;
        let info = describe(&bindings, &mut store).map_err(|e| self.fail(e))?;
        let description = check_description(info, kind, contract)?;
        self.limits = self.runtime.limits().for_plugin(&description.name, kind);
        self.name = Arc::from(description.name.as_str());
        timer.rename(&self.name);
        Ok(description)
    }
}
