//! What the bus asks of a command handler's code: a session per command that folds the
//! stream's new events into its state and decides on the command.
//!
//! A Wasm plugin ([`CommandHandler`]) is one implementation. Native Rust code is
//! another ([`NativeAggregate`], registered with [`super::CommandBus::serve_native`]):
//! the benchmark runs the bank aggregate both ways through the same bus to price the
//! sandbox, and an embedder may serve aggregates it compiled in. Native code runs
//! outside the sandbox: no deadline or memory bound holds for it.

use std::sync::Arc;

use crate::event_store::RecordedEvent;
use crate::plugin::{CallError, Command, CommandHandler, CommandSession, Decision};

/// The code behind a command route.
pub trait AggregateCode: Send + Sync + 'static {
    /// A session for one command. The bus calls [`AggregateSession::fold`] once with
    /// the events its cached state lacks, then [`AggregateSession::handle`] once, on
    /// one thread: an async worker while the code's decisions are fast, a blocking
    /// thread otherwise (see `pace.rs`).
    fn session(&self) -> Result<Box<dyn AggregateSession>, CallError>;

    /// Whether a session now would start on an instance that already served a call.
    /// The bus decides inline only then: creating an instance, and a first call on it,
    /// are slow by nature and belong on the blocking pool.
    fn warm(&self) -> bool {
        true
    }
}

/// One command's use of the code.
pub trait AggregateSession {
    /// The state after `events` (in stream order) are folded into `state` (none before
    /// the stream's first event); `state` itself when there are no events. The state
    /// must be JSON.
    fn fold(
        &mut self,
        state: Option<Arc<str>>,
        events: &[RecordedEvent],
    ) -> Result<Option<Arc<str>>, CallError>;

    /// The events `command` produces against `state`, or a refusal.
    fn handle(&mut self, state: Option<&str>, command: &Command) -> Result<Decision, CallError>;

    /// Whether this session's instance was created for it. Its calls then say nothing
    /// of how fast the code is once warm (a JavaScript or Python guest compiles what a
    /// first call runs), so the bus's pace does not count them.
    fn fresh(&self) -> bool {
        false
    }
}

impl AggregateCode for CommandHandler {
    fn session(&self) -> Result<Box<dyn AggregateSession>, CallError> {
        Ok(Box::new(Finishing(Some(CommandHandler::session(self)?))))
    }

    fn warm(&self) -> bool {
        self.idle_instances() > 0
    }
}

/// A plugin's session that, once the command is done with it, offers its instance
/// for the next command ([`CommandSession::finish`]).
struct Finishing(Option<CommandSession>);

impl Finishing {
    fn session(&mut self) -> &mut CommandSession {
        self.0.as_mut().expect("a session until dropped")
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.finish();
        }
    }
}

impl AggregateSession for Finishing {
    fn fold(
        &mut self,
        state: Option<Arc<str>>,
        events: &[RecordedEvent],
    ) -> Result<Option<Arc<str>>, CallError> {
        self.session().fold(state, events)
    }

    fn handle(&mut self, state: Option<&str>, command: &Command) -> Result<Decision, CallError> {
        self.session().handle(state, command)
    }

    fn fresh(&self) -> bool {
        self.0.as_ref().is_some_and(CommandSession::fresh)
    }
}

/// An aggregate compiled into the host, served beside the plugins' commands.
#[derive(Clone)]
pub struct NativeAggregate {
    /// The name its failures and logs go by, as a plugin's would.
    pub name: String,
    /// A command for aggregate id `x` works on stream `<aggregate_type>-x`.
    pub aggregate_type: String,
    /// Identifies the code's state format: cached states and snapshots under another
    /// digest are not used (change it when the state's shape changes).
    pub digest: String,
    /// The command names it handles; they take precedence over plugins'.
    pub commands: Vec<String>,
    pub code: Arc<dyn AggregateCode>,
}

impl std::fmt::Debug for NativeAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeAggregate")
            .field("name", &self.name)
            .field("aggregate_type", &self.aggregate_type)
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}
