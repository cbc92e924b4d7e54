//! Calling a command handler: the `aggregate` interface's fold and decision.
//!
//! A 0.1.0 handler folds one event per call (`apply`); a 0.2.0 handler folds a list of
//! events per call (`fold`), so bringing a stream up to date costs one call however
//! many events it takes. [`CommandSession::fold`] hides the difference.
//!
//! Instances are reused: a session whose calls all succeeded goes back to its
//! handler's idle list when [`CommandSession::finish`]es, and serves another command
//! of the same plugin version, up to the plugin's `reuse` bound of commands. A failed
//! call (trap, deadline, stop, bad output) drops the instance: it is never called
//! again. Each handler (one per loaded plugin version) has its own list, so an instance
//! never serves another plugin or version. Reuse spares the instantiation and the
//! memory reset per command; the instance's memory bound holds across its commands,
//! and its globals survive between them (ARCHITECTURE.md says what authors must know).

use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::types as wit;
use super::bindings::v0_1::command::exports::tessera::plugin0_1_0::aggregate as aggregate_v0_1;
use super::bindings::v0_2::command::exports::tessera::plugin0_2_0::aggregate as aggregate_v0_2;
use super::bindings::{v0_1, v0_2};
use super::caller::Caller;
use super::deadline::set_deadline;
use super::describe::{Description, quote};
use super::error::{CallError, LoadError, Refusal};
use super::events::{slice_len, to_wit_event, to_wit_metadata};
use super::host::HostState;
use super::linked::{Idle, Linked, Live, World};
use super::runtime::Runtime;
use super::world::{Contract, PluginKind};
use crate::event_store::{Metadata, RecordedEvent};

/// The most events one `fold` call is given. Each call has its own deadline, so a long
/// stream folded from the start (after a deploy: states and snapshots belong to the
/// code that folded them) is folded in calls of bounded work, not in one call that
/// the deadline cuts however fast the plugin is per event.
const MAX_FOLD_EVENTS: usize = 256;

/// A command handler plugin, linked and ready to instantiate.
pub struct CommandHandler {
    linked: Linked<Bindings>,
    idle: Arc<Idle<Bindings>>,
}

/// The linked component, by contract.
enum Pre {
    V0_1(v0_1::command::CommandHandlerPre<HostState>),
    V0_2(v0_2::command::CommandHandlerPre<HostState>),
}

/// One instance's exports, by contract.
enum Bindings {
    V0_1(v0_1::command::CommandHandler),
    V0_2(v0_2::command::CommandHandler),
}

impl World for Bindings {
    const KIND: PluginKind = PluginKind::CommandHandler;
    const HANDLER: &'static str = "CommandHandler";
    type Pre = Pre;

    fn pre(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        match contract {
            Contract::V0_1 => v0_1::command::CommandHandlerPre::new(pre).map(Pre::V0_1),
            Contract::V0_2 => v0_2::command::CommandHandlerPre::new(pre).map(Pre::V0_2),
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
                .tessera_plugin0_1_0_aggregate()
                .call_describe(store)
                .map(Into::into),
            Bindings::V0_2(b) => b.tessera_plugin0_2_0_aggregate().call_describe(store),
        }
    }
}

impl std::fmt::Debug for CommandHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.linked.fmt(f)
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
    /// Links a command handler plugin and asks it what it is.
    pub(super) fn load(
        runtime: Runtime,
        component: &Component,
        contract: Contract,
    ) -> Result<(Description, Self), LoadError> {
        let (description, linked) = Linked::load(runtime, component, contract)?;
        let handler = CommandHandler {
            linked,
            idle: Arc::default(),
        };
        Ok((description, handler))
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> Contract {
        self.linked.contract()
    }

    /// An instance for one command (fold the stream, then decide): an idle one that
    /// may serve another command, or a fresh one.
    pub fn session(&self) -> Result<CommandSession, CallError> {
        let live = match self.idle.take() {
            Some(live) => live,
            None => {
                let caller = &self.linked.caller;
                let mut store = caller.store();
                set_deadline(&mut store, caller.limits.deadline);
                let bindings = self
                    .linked
                    .instantiate(&mut store)
                    .map_err(|e| caller.fail(e))?;
                Live {
                    store,
                    bindings,
                    served: 0,
                }
            }
        };
        Ok(CommandSession {
            caller: self.linked.caller.clone(),
            store: live.store,
            bindings: live.bindings,
            served: live.served,
            idle: self.idle.clone(),
            failed: false,
            calls: 0,
        })
    }

    /// Instances kept for reuse now.
    pub fn idle_instances(&self) -> usize {
        self.idle.len()
    }
}

/// One instance of a command handler, used for one command; then [`finish`] offers
/// it for the next, or it is dropped.
///
/// [`finish`]: CommandSession::finish
pub struct CommandSession {
    caller: Caller,
    store: Store<HostState>,
    bindings: Bindings,
    /// Commands the instance served before this one.
    served: u32,
    idle: Arc<Idle<Bindings>>,
    /// A call failed: the instance must not be called again.
    failed: bool,
    /// Calls made into the guest so far (`describe` aside).
    calls: u64,
}

impl std::fmt::Debug for CommandSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSession")
            .field("name", &self.caller.name)
            .finish_non_exhaustive()
    }
}

impl CommandSession {
    /// Whether the instance was created for this command (an idle one has served
    /// at least one).
    pub fn fresh(&self) -> bool {
        self.served == 0
    }

    fn fail(&mut self, error: wasmtime::Error) -> CallError {
        self.failed = true;
        self.caller.fail(error)
    }

    /// Ends the command: the instance goes back to its handler's idle list if every
    /// call succeeded and it may serve more commands; otherwise it is dropped.
    pub fn finish(self) {
        if self.failed {
            return;
        }
        let live = Live {
            store: self.store,
            bindings: self.bindings,
            served: self.served,
        };
        self.idle.offer(live, self.caller.limits.reuse);
    }

    /// Folds `events` (in stream order) into `state`, none before the stream's first
    /// event, and returns the state after the last one (`state` itself when there are
    /// no events). A 0.2.0 handler folds them in one call (a list too large to hand
    /// over at once, past an eighth of the instance's memory bound, in one call per
    /// such slice), a 0.1.0 handler in one call per event. Each call has the call
    /// deadline. The new state must be JSON, like everything else a guest hands the
    /// host.
    pub fn fold(
        &mut self,
        state: Option<Arc<str>>,
        events: &[RecordedEvent],
    ) -> Result<Option<Arc<str>>, CallError> {
        let mut state = state;
        let mut rest = events;
        while !rest.is_empty() {
            let take = match self.bindings {
                Bindings::V0_1(_) => 1,
                Bindings::V0_2(_) => {
                    slice_len(rest, self.caller.limits.max_memory / 8).min(MAX_FOLD_EVENTS)
                }
            };
            let (slice, after) = rest.split_at(take);
            state = Some(Arc::from(self.fold_call(state.as_deref(), slice)?));
            rest = after;
        }
        Ok(state)
    }

    /// Folds one event into `state` (none before the first event).
    pub fn apply(
        &mut self,
        state: Option<&str>,
        event: &RecordedEvent,
    ) -> Result<String, CallError> {
        self.fold_call(state, std::slice::from_ref(event))
    }

    /// One guest call that folds `events` (one only, for 0.1.0), with its check.
    fn fold_call(
        &mut self,
        state: Option<&str>,
        events: &[RecordedEvent],
    ) -> Result<String, CallError> {
        set_deadline(&mut self.store, self.caller.limits.deadline);
        self.calls += 1;
        let _timer = self.caller.timer(crate::metrics::Call::Fold);
        let state = state.map(str::to_string);
        let folded = match &self.bindings {
            Bindings::V0_1(b) => {
                let [event] = events else {
                    unreachable!("a 0.1.0 aggregate folds one event per call")
                };
                b.tessera_plugin0_1_0_aggregate().call_apply(
                    &mut self.store,
                    state.as_ref(),
                    &to_wit_event(event).into(),
                )
            }
            Bindings::V0_2(b) => {
                let events: Vec<wit::Event> = events.iter().map(to_wit_event).collect();
                b.tessera_plugin0_2_0_aggregate().call_fold(
                    &mut self.store,
                    state.as_ref(),
                    &events,
                )
            }
        }
        .map_err(|e| self.fail(e))?;
        if let Err(error) = crate::json::check(&folded) {
            let last = events.last().map_or("", |e| e.event_type.as_str());
            let what = match events.len() {
                1 => format!("the state after a {} event", quote(last)),
                n => format!(
                    "the state after {n} events, the last a {} event",
                    quote(last)
                ),
            };
            return Err(self.bad_output(format!("{what}: {error}")));
        }
        Ok(folded)
    }

    /// How many calls this session has made into the guest (instantiation and
    /// `describe` aside): for tests that check how folds are batched.
    #[doc(hidden)]
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Decides on a command against `state`.
    pub fn handle(
        &mut self,
        state: Option<&str>,
        command: &Command,
    ) -> Result<Decision, CallError> {
        set_deadline(&mut self.store, self.caller.limits.deadline);
        self.calls += 1;
        let _timer = self.caller.timer(crate::metrics::Call::Handle);
        let state = state.map(str::to_string);
        let metadata = to_wit_metadata(&command.metadata);
        let decision: Result<Vec<(String, String)>, wit::Refusal> = match &self.bindings {
            Bindings::V0_1(b) => b
                .tessera_plugin0_1_0_aggregate()
                .call_handle(
                    &mut self.store,
                    state.as_ref(),
                    &aggregate_v0_1::Command {
                        name: command.name.clone(),
                        aggregate_id: command.aggregate_id.clone(),
                        payload: command.payload.clone(),
                        metadata: metadata.into(),
                    },
                )
                .map(|decision| {
                    decision
                        .map(|events| events.into_iter().map(|e| (e.event_type, e.data)).collect())
                        .map_err(Into::into)
                }),
            Bindings::V0_2(b) => b
                .tessera_plugin0_2_0_aggregate()
                .call_handle(
                    &mut self.store,
                    state.as_ref(),
                    &aggregate_v0_2::Command {
                        name: command.name.clone(),
                        aggregate_id: command.aggregate_id.clone(),
                        payload: command.payload.clone(),
                        metadata,
                    },
                )
                .map(|decision| {
                    decision
                        .map(|events| events.into_iter().map(|e| (e.event_type, e.data)).collect())
                }),
        }
        .map_err(|e| self.fail(e))?;
        match decision {
            Ok(events) => events
                .into_iter()
                .map(|(event_type, data)| {
                    if !is_event_type(&event_type) {
                        return Err(self.bad_output(format!(
                            "event type {} must be 1-{MAX_EVENT_TYPE} ASCII letters, digits or -_.:",
                            quote(&event_type)
                        )));
                    }
                    let data = crate::json::checked(data).map_err(|error| {
                        self.bad_output(format!("the data of a {event_type} event: {error}"))
                    })?;
                    Ok((event_type, data))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Ok),
            Err(refusal) => Ok(Err(refusal.into())),
        }
    }

    fn bad_output(&mut self, reason: String) -> CallError {
        self.failed = true;
        self.caller.bad_output(reason)
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
