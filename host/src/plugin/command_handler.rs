//! Calling a command handler: the `aggregate` interface's fold and decision.

use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::command::exports::tessera::plugin::aggregate as wit_aggregate;
use super::bindings::command::{CommandHandler as Bindings, CommandHandlerPre};
use super::host::{HostState, LogRate};
use super::{
    CallError, CallLimits, Description, LoadError, PluginKind, Refusal, Runtime, describe_plugin,
    pre_instantiate, quote, set_deadline, wit, wrong_world,
};
use crate::event_store::{Metadata, RecordedEvent};

/// A command handler plugin, linked and ready to instantiate.
pub struct CommandHandler {
    name: Arc<str>,
    runtime: Runtime,
    limits: CallLimits,
    log_rate: Arc<LogRate>,
    pre: CommandHandlerPre<HostState>,
}

impl std::fmt::Debug for CommandHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A command as the handler receives it.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub aggregate_id: String,
    /// A JSON document.
    pub payload: String,
    pub metadata: Metadata,
}

/// What a handler decided: events to append (type and JSON data), or a refusal.
pub type Decision = Result<Vec<(String, Box<RawValue>)>, Refusal>;

impl CommandHandler {
    pub(super) fn link(runtime: Runtime, component: &Component) -> Result<Self, LoadError> {
        let pre = pre_instantiate(
            &runtime.inner.command_linker,
            component,
            PluginKind::CommandHandler,
        )?;
        let pre =
            CommandHandlerPre::new(pre).map_err(|e| wrong_world(PluginKind::CommandHandler, e))?;
        Ok(CommandHandler {
            name: Arc::from(PluginKind::CommandHandler.to_string()),
            limits: runtime.limits().describing(),
            log_rate: Arc::default(),
            runtime,
            pre,
        })
    }

    /// Asks the plugin what it is, and names it after the answer.
    pub(super) fn describe(&mut self) -> Result<Description, LoadError> {
        let (description, name, limits) = describe_plugin(
            &self.runtime,
            PluginKind::CommandHandler,
            |store| self.pre.instantiate(store),
            |bindings, store| bindings.tessera_plugin_aggregate().call_describe(store),
        )?;
        self.name = name;
        self.limits = limits;
        Ok(description)
    }

    /// A fresh instance for one command: fold the stream, then decide.
    pub fn session(&self) -> Result<CommandSession, CallError> {
        let mut store = self
            .runtime
            .store(self.name.clone(), self.limits, self.log_rate.clone());
        let deadline = self.limits.deadline;
        set_deadline(&mut store, deadline);
        let bindings = self.pre.instantiate(&mut store).map_err(|e| {
            CallError::from_wasmtime(&self.name, deadline, self.runtime.stopping(), e)
        })?;
        Ok(CommandSession {
            name: self.name.clone(),
            limits: self.limits,
            runtime: self.runtime.clone(),
            store,
            bindings,
        })
    }
}

/// One instance of a command handler, used for one command and then dropped.
pub struct CommandSession {
    name: Arc<str>,
    limits: CallLimits,
    runtime: Runtime,
    store: Store<HostState>,
    bindings: Bindings,
}

impl std::fmt::Debug for CommandSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSession")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CommandSession {
    fn fail(&self, error: wasmtime::Error) -> CallError {
        CallError::from_wasmtime(
            &self.name,
            self.limits.deadline,
            self.runtime.stopping(),
            error,
        )
    }

    /// Folds one event into `state` (none before the first event). The new state must
    /// be JSON, like everything else a guest hands the host.
    pub fn apply(
        &mut self,
        state: Option<&str>,
        event: &RecordedEvent,
    ) -> Result<String, CallError> {
        set_deadline(&mut self.store, self.limits.deadline);
        let event = to_wit_event(event);
        let state = self
            .bindings
            .tessera_plugin_aggregate()
            .call_apply(&mut self.store, state.map(str::to_string).as_ref(), &event)
            .map_err(|e| self.fail(e))?;
        if let Err(error) = crate::json::check(&state) {
            return Err(self.bad_output(format!(
                "the state after a {} event: {error}",
                quote(&event.event_type)
            )));
        }
        Ok(state)
    }

    /// Decides on a command against `state`.
    pub fn handle(
        &mut self,
        state: Option<&str>,
        command: &Command,
    ) -> Result<Decision, CallError> {
        set_deadline(&mut self.store, self.limits.deadline);
        let command = wit_aggregate::Command {
            name: command.name.clone(),
            aggregate_id: command.aggregate_id.clone(),
            payload: command.payload.clone(),
            metadata: to_wit_metadata(&command.metadata),
        };
        let decision = self
            .bindings
            .tessera_plugin_aggregate()
            .call_handle(
                &mut self.store,
                state.map(str::to_string).as_ref(),
                &command,
            )
            .map_err(|e| self.fail(e))?;
        match decision {
            Ok(events) => events
                .into_iter()
                .map(|event| {
                    if !is_event_type(&event.event_type) {
                        return Err(self.bad_output(format!(
                            "event type {} must be 1-{MAX_EVENT_TYPE} ASCII letters, digits or -_.:",
                            quote(&event.event_type)
                        )));
                    }
                    let data = crate::json::checked(event.data).map_err(|error| {
                        self.bad_output(format!(
                            "the data of a {} event: {error}",
                            event.event_type
                        ))
                    })?;
                    Ok((event.event_type, data))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Ok),
            Err(refusal) => Ok(Err(refusal.into())),
        }
    }

    fn bad_output(&self, reason: String) -> CallError {
        CallError::BadOutput {
            plugin: self.name.to_string(),
            reason,
        }
    }
}

/// The longest event type a handler may name.
const MAX_EVENT_TYPE: usize = 128;

/// Event types are names, read by people and matched by projections: no spaces,
/// control characters or escapes that could forge log lines or terminal output.
fn is_event_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_TYPE
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn to_wit_metadata(metadata: &Metadata) -> wit::Metadata {
    wit::Metadata {
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        causation_id: metadata.causation_id.clone(),
        principal: metadata.principal.clone(),
        timestamp: metadata.timestamp.clone(),
    }
}

pub(super) fn to_wit_event(event: &RecordedEvent) -> wit::Event {
    wit::Event {
        position: event.position,
        stream: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        data: event.data.get().to_string(),
        metadata: to_wit_metadata(&event.metadata),
        timestamp: event.timestamp.clone(),
    }
}
