//! Given/when/then tests for aggregates that run natively, with `cargo test` and no
//! host, in the manner of cqrs-es's `TestFramework`.
//!
//! ```ignore
//! use tessera_sdk::testing::AggregateTest;
//!
//! AggregateTest::<Account>::given(vec![Event::AccountOpened { owner: "ada".into() }])
//!     .when(Command::Deposit { amount: 5 })
//!     .then_expect_events(vec![Event::Deposited { amount: 5 }]);
//!
//! AggregateTest::<Account>::given_no_previous_events()
//!     .when(Command::Withdraw { amount: 5 })
//!     .then_refused_with("account_not_open");
//! ```
//!
//! What it guarantees: the aggregate sees what the host would show it. Each given
//! event goes through its stored form (event type and JSON data) before it is folded,
//! the folded state goes through JSON before the command is handled (the host keeps
//! states as JSON between commands), and every event the command produces must read
//! back as the aggregate's event type (the host will fold it later). Events are
//! compared by that stored form, so `Event` need not implement `PartialEq`.
//! [`AggregateTest::when_payload`] decodes a command from JSON exactly as the host
//! does, to test how malformed payloads are refused.
//!
//! Projections and query handlers are not covered natively: their SQL goes through
//! the host's imports (`projection-store`, `read-store`), which exist only inside a
//! Tessera host; natively [`crate::Db`] and [`crate::read`] answer with an error. Test
//! them against a running host (deploy, send commands, ask queries).

use std::fmt::Write as _;

use serde_json::Value;

use crate::aggregate::{decode_command, event_from_parts, event_parts, load};
use crate::{Aggregate, Metadata, Refusal};

/// The metadata a test command carries unless the test sets its own.
pub fn test_metadata() -> Metadata {
    Metadata {
        command_id: "test-command".to_string(),
        correlation_id: "test-command".to_string(),
        causation_id: "test-command".to_string(),
        principal: None,
        timestamp: "2026-01-01T00:00:00Z".to_string(),
        claims: None,
    }
}

/// A stream's history and the metadata of the command about to be sent to it.
#[derive(Debug)]
pub struct AggregateTest<A: Aggregate> {
    given: Vec<A::Event>,
    metadata: Metadata,
}

impl<A: Aggregate> AggregateTest<A> {
    /// A stream that already holds `events`, oldest first.
    pub fn given(events: Vec<A::Event>) -> Self {
        AggregateTest {
            given: events,
            metadata: test_metadata(),
        }
    }

    /// A stream with no events yet.
    pub fn given_no_previous_events() -> Self {
        Self::given(Vec::new())
    }

    /// Sends the command with this metadata instead of [`test_metadata`].
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sends the command on behalf of `principal`, as an authenticated caller would.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.metadata.principal = Some(principal.into());
        self
    }

    /// Folds the given events and decides on `command`.
    #[track_caller]
    pub fn when(self, command: A::Command) -> Then<A> {
        let state = self.state();
        let decision = state.handle(command, &self.metadata);
        Then::new(state, decision)
    }

    /// Folds the given events and decides on the command `name` with `payload`,
    /// decoded from JSON as the host decodes it: a payload that does not fit is
    /// refused as invalid, naming the field, before the aggregate sees it.
    #[track_caller]
    pub fn when_payload(self, name: &str, payload: Value) -> Then<A> {
        let state = self.state();
        let decision = decode_command::<A>(name.to_string(), payload)
            .and_then(|command| state.handle(command, &self.metadata));
        Then::new(state, decision)
    }

    /// The state the host would hand to `handle`: the given events read back from
    /// their stored form, folded, and the result read back from JSON.
    #[track_caller]
    fn state(&self) -> A {
        let mut state = A::default();
        for event in &self.given {
            state.apply(round_trip::<A>(event));
        }
        let json = serde_json::to_string(&state).expect("aggregate state serializes to JSON");
        load::<A>(Some(json))
    }
}

/// What the aggregate decided, to assert on.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    state: A,
    decision: Result<Vec<A::Event>, Refusal>,
}

impl<A: Aggregate> Then<A> {
    #[track_caller]
    fn new(state: A, decision: Result<Vec<A::Event>, Refusal>) -> Self {
        // The host folds what a command produced into the stream's next state, so an
        // event that does not read back would break the stream: fail the test here.
        if let Ok(events) = &decision {
            for event in events {
                round_trip::<A>(event);
            }
        }
        Then { state, decision }
    }

    /// Asserts that the command was accepted with exactly these events, compared by
    /// their stored form (type and JSON data), in order.
    #[track_caller]
    pub fn then_expect_events(self, expected: Vec<A::Event>) -> Self {
        let actual = match &self.decision {
            Ok(events) => stored(events),
            Err(refusal) => panic!(
                "expected events\n{}but the command was refused: {refusal:?}",
                describe(&stored(&expected))
            ),
        };
        let expected = stored(&expected);
        assert!(
            actual == expected,
            "the events differ\nexpected:\n{}actual:\n{}",
            describe(&expected),
            describe(&actual)
        );
        self
    }

    /// Asserts that the command was refused, and hands the refusal to `check`.
    #[track_caller]
    pub fn then_expect_refusal(self, check: impl FnOnce(&Refusal)) {
        match &self.decision {
            Ok(events) => panic!(
                "expected a refusal, but the command was accepted with\n{}",
                describe(&stored(events))
            ),
            Err(refusal) => check(refusal),
        }
    }

    /// Asserts that a business rule refused the command with `code`
    /// ([`Refusal::Rejected`]; the host answers 422 `rejected`).
    #[track_caller]
    pub fn then_refused_with(self, code: &str) {
        match &self.decision {
            Err(Refusal::Rejected { code: actual, .. }) if actual == code => {}
            Ok(events) => panic!(
                "expected a refusal {code:?}, but the command was accepted with\n{}",
                describe(&stored(events))
            ),
            Err(other) => panic!("expected a refusal {code:?}, got {other:?}"),
        }
    }

    /// Asserts that the command was refused as invalid with a message about `field`
    /// ([`Refusal::Invalid`]; the host answers 422 `validation_failed`).
    #[track_caller]
    pub fn then_invalid(self, field: &str) {
        match &self.decision {
            Err(Refusal::Invalid(fields)) if fields.iter().any(|f| f.field == field) => {}
            Ok(events) => panic!(
                "expected {field:?} to be invalid, but the command was accepted with\n{}",
                describe(&stored(events))
            ),
            Err(other) => panic!("expected {field:?} to be invalid, got {other:?}"),
        }
    }

    /// Asserts that the command was accepted, and hands `check` the state after its
    /// events were folded, as the next command will see it.
    #[track_caller]
    pub fn then_expect_state(self, check: impl FnOnce(&A)) -> Self {
        let Then { state, decision } = self;
        let events = match decision {
            Ok(events) => events,
            Err(refusal) => {
                panic!("expected a new state, but the command was refused: {refusal:?}")
            }
        };
        let mut next = state;
        for event in &events {
            next.apply(round_trip::<A>(event));
        }
        let json = serde_json::to_string(&next).expect("aggregate state serializes to JSON");
        let next = load::<A>(Some(json));
        check(&next);
        Then {
            state: next,
            decision: Ok(events),
        }
    }

    /// The decision itself, for assertions of one's own.
    pub fn inspect_result(self) -> Result<Vec<A::Event>, Refusal> {
        self.decision
    }
}

/// `event` as the host stores it and reads it back for the aggregate.
#[track_caller]
fn round_trip<A: Aggregate>(event: &A::Event) -> A::Event {
    let (event_type, data) = event_parts(event);
    event_from_parts::<A::Event>(&event_type, data.clone()).unwrap_or_else(|e| {
        panic!("an event is stored as {event_type} {data}, which does not deserialize back: {e}")
    })
}

fn stored<E: serde::Serialize>(events: &[E]) -> Vec<(String, Value)> {
    events.iter().map(event_parts).collect()
}

fn describe(events: &[(String, Value)]) -> String {
    if events.is_empty() {
        return "  (no events)\n".to_string();
    }
    let mut text = String::new();
    for (event_type, data) in events {
        let _ = writeln!(text, "  {event_type} {data}");
    }
    text
}

#[cfg(test)]
mod tests {
    //! The framework's own checks, on a tiny aggregate that records who signed.

    use serde::{Deserialize, Serialize};

    use super::AggregateTest;
    use crate::{Aggregate, Metadata, Refusal};

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Ledger {
        signers: Vec<String>,
        // Not kept by the host between commands: must not survive the JSON trip.
        #[serde(skip)]
        scratch: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Command {
        Sign,
    }

    #[derive(Debug, Serialize, Deserialize)]
    enum Event {
        Signed { by: String },
        Sealed,
    }

    impl Aggregate for Ledger {
        const AGGREGATE_TYPE: &'static str = "ledger";
        type Command = Command;
        type Event = Event;

        fn apply(&mut self, event: Event) {
            self.scratch += 1;
            if let Event::Signed { by } = event {
                self.signers.push(by);
            }
        }

        fn handle(
            &self,
            Command::Sign: Command,
            metadata: &Metadata,
        ) -> Result<Vec<Event>, Refusal> {
            let by = metadata
                .principal
                .clone()
                .ok_or_else(|| Refusal::rejected("anonymous", "sign in first"))?;
            if self.signers.contains(&by) {
                return Err(Refusal::rejected("already_signed", format!("{by} signed")));
            }
            if self.scratch != 0 {
                return Err(Refusal::rejected("state_not_from_json", "scratch survived"));
            }
            Ok(vec![Event::Signed { by }, Event::Sealed])
        }
    }

    #[test]
    fn the_principal_reaches_the_handler() {
        AggregateTest::<Ledger>::given_no_previous_events()
            .with_principal("ada")
            .when(Command::Sign)
            .then_expect_events(vec![Event::Signed { by: "ada".into() }, Event::Sealed])
            .then_expect_state(|ledger| assert_eq!(ledger.signers, ["ada"]));
        AggregateTest::<Ledger>::given_no_previous_events()
            .when(Command::Sign)
            .then_refused_with("anonymous");
    }

    #[test]
    fn given_events_are_folded_and_the_state_read_back_from_json() {
        AggregateTest::<Ledger>::given(vec![Event::Signed { by: "ada".into() }])
            .with_metadata(Metadata {
                principal: Some("ada".into()),
                ..super::test_metadata()
            })
            .when_payload("sign", serde_json::Value::Null)
            .then_refused_with("already_signed");
        // `scratch` counted the folded event, but the host would not have kept it.
        AggregateTest::<Ledger>::given(vec![Event::Signed { by: "ada".into() }])
            .with_principal("grace")
            .when(Command::Sign)
            .then_expect_events(vec![Event::Signed { by: "grace".into() }, Event::Sealed])
            .then_expect_state(|ledger| assert_eq!(ledger.signers, ["ada", "grace"]));
    }

    #[test]
    fn unknown_commands_are_invalid() {
        AggregateTest::<Ledger>::given_no_previous_events()
            .when_payload("burn", serde_json::json!({}))
            .then_expect_refusal(|refusal| assert!(matches!(refusal, Refusal::Invalid(_))));
    }

    #[test]
    #[should_panic(expected = "the events differ")]
    fn other_events_fail_the_test() {
        AggregateTest::<Ledger>::given_no_previous_events()
            .with_principal("ada")
            .when(Command::Sign)
            .then_expect_events(vec![Event::Signed { by: "grace".into() }, Event::Sealed]);
    }

    #[test]
    #[should_panic(expected = "but the command was accepted")]
    fn an_accepted_command_fails_a_refusal_test() {
        AggregateTest::<Ledger>::given_no_previous_events()
            .with_principal("ada")
            .when(Command::Sign)
            .then_refused_with("anonymous");
    }

    #[test]
    #[should_panic(expected = "expected a refusal \"already_signed\", got Rejected")]
    fn another_code_fails_a_refusal_test() {
        AggregateTest::<Ledger>::given_no_previous_events()
            .when(Command::Sign)
            .then_refused_with("already_signed");
    }
}
