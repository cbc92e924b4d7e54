//! What can go wrong with a plugin, and what a plugin may answer instead of a result.
//!
//! [`LoadError`]: a `.wasm` was not loaded (nothing of it was registered).
//! [`CallError`]: a call failed in a way that is the guest's fault or the host's
//! shutdown; the instance is dropped and the host keeps serving. [`Refusal`]: the
//! guest answered, and its answer is no; a refusal is a result, not a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::bindings::types as wit;
use super::world::PluginKind;

/// Why a handler refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed input: `(field, message)` pairs.
    Invalid(Vec<(String, String)>),
    /// A business rule said no.
    Rejected { code: String, message: String },
    /// What was asked for does not exist.
    NotFound(String),
}

impl From<wit::Refusal> for Refusal {
    fn from(refusal: wit::Refusal) -> Self {
        match refusal {
            wit::Refusal::Invalid(fields) => {
                Refusal::Invalid(fields.into_iter().map(|f| (f.field, f.message)).collect())
            }
            wit::Refusal::Rejected(rejection) => Refusal::Rejected {
                code: rejection.code,
                message: rejection.message,
            },
            wit::Refusal::NotFound(message) => Refusal::NotFound(message),
        }
    }
}

/// Why a `.wasm` could not be loaded. Report it with the file; the previous version of
/// the plugin, if any, stays in service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component implements no Tessera world (it exports none of {expected})")]
    UnknownWorld { expected: String },
    #[error("the component does not fit the {kind} world: {reason}")]
    WrongWorld { kind: PluginKind, reason: String },
    #[error(
        "the component imports {import}, which the host does not offer: a plugin of the \
         {kind} world may import only that world's tessera:plugin interfaces and WASI's \
         io, clocks, random, cli, filesystem and sockets (which grant nothing). {hint}"
    )]
    UnofferedImport {
        kind: PluginKind,
        import: String,
        hint: &'static str,
    },
    #[error("describe failed: {0}")]
    DescribeFailed(#[from] CallError),
    #[error("describe returned an invalid description: {0}")]
    BadDescription(String),
}

/// A call into a plugin failed. The instance is dropped; the host keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (a panic, an out-of-bounds access, memory exhausted...).
    #[error("plugin {plugin} trapped: {reason}")]
    Trapped { plugin: String, reason: String },
    /// The guest ran past its deadline and was interrupted.
    #[error("plugin {plugin} ran past its {deadline:?} deadline")]
    DeadlineExceeded { plugin: String, deadline: Duration },
    /// The guest returned something the host cannot use (e.g. event data that is not
    /// JSON). A bug in the plugin.
    #[error("plugin {plugin} returned malformed output: {reason}")]
    BadOutput { plugin: String, reason: String },
    /// The host is shutting down and ended the call; try again on a running host.
    #[error("plugin {plugin}'s call was ended: the host is shutting down")]
    Stopped { plugin: String },
}

impl CallError {
    /// What wasmtime's `error` from a call of `plugin` means: an interrupt is the
    /// deadline, or the host stopping when `stop` is set; anything else is a trap.
    pub(super) fn from_wasmtime(
        plugin: &str,
        deadline: Duration,
        stop: &AtomicBool,
        error: wasmtime::Error,
    ) -> Self {
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            if stop.load(Ordering::Relaxed) {
                return CallError::Stopped {
                    plugin: plugin.to_string(),
                };
            }
            return CallError::DeadlineExceeded {
                plugin: plugin.to_string(),
                deadline,
            };
        }
        CallError::Trapped {
            plugin: plugin.to_string(),
            reason: format!("{error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_millis(250);

    #[test]
    fn an_interrupt_is_the_deadline_unless_the_host_is_stopping() {
        let running = AtomicBool::new(false);
        let error =
            CallError::from_wasmtime("bank", DEADLINE, &running, wasmtime::Trap::Interrupt.into());
        assert!(matches!(
            error,
            CallError::DeadlineExceeded { ref plugin, deadline } if plugin == "bank" && deadline == DEADLINE
        ));

        let stopping = AtomicBool::new(true);
        let error = CallError::from_wasmtime(
            "bank",
            DEADLINE,
            &stopping,
            wasmtime::Trap::Interrupt.into(),
        );
        assert!(matches!(error, CallError::Stopped { ref plugin } if plugin == "bank"));
    }

    #[test]
    fn any_other_failure_is_a_trap_with_its_reason() {
        let stopping = AtomicBool::new(true);
        let error = CallError::from_wasmtime(
            "bank",
            DEADLINE,
            &stopping,
            wasmtime::Trap::UnreachableCodeReached.into(),
        );
        let CallError::Trapped { plugin, reason } = error else {
            panic!("expected a trap");
        };
        assert_eq!(plugin, "bank");
        assert!(!reason.is_empty());
    }

    #[test]
    fn a_guest_refusal_keeps_every_field() {
        let refusal = Refusal::from(wit::Refusal::Invalid(vec![wit::FieldError {
            field: "amount".into(),
            message: "must be positive".into(),
        }]));
        assert_eq!(
            refusal,
            Refusal::Invalid(vec![("amount".into(), "must be positive".into())])
        );
        let refusal = Refusal::from(wit::Refusal::Rejected(wit::Rejection {
            code: "overdrawn".into(),
            message: "not enough money".into(),
        }));
        assert_eq!(
            refusal,
            Refusal::Rejected {
                code: "overdrawn".into(),
                message: "not enough money".into()
            }
        );
    }
}
