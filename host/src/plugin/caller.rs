//! What every kind of handler keeps to make its calls and to judge their outcome: the
//! plugin's name (its kind's name until `describe` has answered), the limits its calls
//! run under, the runtime, and the plugin's log rate.
//!
//! One type for the three handlers, so that a store is set up and a failure told apart
//! (trap, deadline, shutdown) the same way whatever the kind. It is cheap to clone: a
//! command session takes its own copy.

use std::sync::Arc;

use wasmtime::Store;

use super::error::CallError;
use super::host::{HostState, LogRate};
use super::limits::CallLimits;
use super::runtime::Runtime;
use super::world::PluginKind;

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

    /// A fresh store for `describe`, with a log rate of its own rather than the
    /// plugin's: what `describe` logs does not count against the plugin's calls.
    pub(super) fn describe_store(&self) -> Store<HostState> {
        self.runtime
            .store(self.name.clone(), self.limits, Arc::default())
    }

    /// From now on, calls are of plugin `name` of `kind`, under that plugin's limits.
    pub(super) fn rename(&mut self, name: &str, kind: PluginKind) {
        self.limits = self.runtime.limits().for_plugin(name, kind);
        self.name = Arc::from(name);
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
}
