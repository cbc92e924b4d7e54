//! The account's rules as given/when/then tests, run natively by `cargo test` with no
//! host: `cargo test --manifest-path plugins/Cargo.toml -p bank-account`.

use tessera_sdk::Refusal;
use tessera_sdk::json;
use tessera_sdk::testing::AggregateTest;

use super::{Account, Command, Event, MAX_BALANCE};

fn opened() -> Event {
    Event::AccountOpened {
        owner: "ada".into(),
    }
}

#[test]
fn an_account_is_opened_by_its_owner() {
    AggregateTest::<Account>::given_no_previous_events()
        .when(Command::OpenAccount {
            owner: "ada".into(),
        })
        .then_expect_events(vec![opened()])
        .then_expect_state(|account| {
            assert_eq!(account.owner.as_deref(), Some("ada"));
            assert_eq!(account.balance, 0);
        });
}

#[test]
fn an_account_needs_an_owner() {
    AggregateTest::<Account>::given_no_previous_events()
        .when(Command::OpenAccount { owner: "  ".into() })
        .then_invalid("owner");
}

#[test]
fn an_account_is_opened_once() {
    AggregateTest::<Account>::given(vec![opened()])
        .when(Command::OpenAccount {
            owner: "grace".into(),
        })
        .then_refused_with("account_already_open");
}

#[test]
fn a_deposit_adds_to_the_balance() {
    AggregateTest::<Account>::given(vec![opened(), Event::Deposited { amount: 10 }])
        .when(Command::Deposit { amount: 5 })
        .then_expect_events(vec![Event::Deposited { amount: 5 }])
        .then_expect_state(|account| assert_eq!(account.balance, 15));
}

#[test]
fn money_moves_only_on_an_open_account() {
    AggregateTest::<Account>::given_no_previous_events()
        .when(Command::Deposit { amount: 5 })
        .then_refused_with("account_not_open");
    AggregateTest::<Account>::given_no_previous_events()
        .when(Command::Withdraw { amount: 5 })
        .then_refused_with("account_not_open");
}

#[test]
fn amounts_are_positive() {
    AggregateTest::<Account>::given(vec![opened()])
        .when(Command::Deposit { amount: 0 })
        .then_invalid("amount");
    AggregateTest::<Account>::given(vec![opened(), Event::Deposited { amount: 10 }])
        .when(Command::Withdraw { amount: 0 })
        .then_invalid("amount");
}

#[test]
fn a_withdrawal_never_overdraws() {
    let history = || vec![opened(), Event::Deposited { amount: 10 }];
    AggregateTest::<Account>::given(history())
        .when(Command::Withdraw { amount: 11 })
        .then_expect_refusal(|refusal| match refusal {
            Refusal::Rejected { code, message } => {
                assert_eq!(code, "insufficient_funds");
                assert!(message.contains("the balance is 10"), "{message}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        });
    AggregateTest::<Account>::given(history())
        .when(Command::Withdraw { amount: 10 })
        .then_expect_events(vec![Event::Withdrawn { amount: 10 }])
        .then_expect_state(|account| assert_eq!(account.balance, 0));
}

#[test]
fn a_balance_stops_at_the_largest_amount_a_read_model_holds() {
    AggregateTest::<Account>::given(vec![opened(), Event::Deposited { amount: 10 }])
        .when(Command::Deposit {
            amount: MAX_BALANCE - 10,
        })
        .then_expect_events(vec![Event::Deposited {
            amount: MAX_BALANCE - 10,
        }]);
    AggregateTest::<Account>::given(vec![opened(), Event::Deposited { amount: 10 }])
        .when(Command::Deposit {
            amount: MAX_BALANCE - 9,
        })
        .then_refused_with("balance_limit");
    // u64's largest does not wrap the balance around to something small.
    AggregateTest::<Account>::given(vec![opened(), Event::Deposited { amount: 10 }])
        .when(Command::Deposit { amount: u64::MAX })
        .then_refused_with("balance_limit");
}

#[test]
fn withdrawals_count_against_the_balance() {
    AggregateTest::<Account>::given(vec![
        opened(),
        Event::Deposited { amount: 10 },
        Event::Withdrawn { amount: 7 },
    ])
    .when(Command::Withdraw { amount: 4 })
    .then_refused_with("insufficient_funds");
}

#[test]
fn payloads_are_decoded_as_the_host_decodes_them() {
    AggregateTest::<Account>::given(vec![opened()])
        .when_payload("deposit", json!({ "amount": 5 }))
        .then_expect_events(vec![Event::Deposited { amount: 5 }]);
    AggregateTest::<Account>::given(vec![opened()])
        .when_payload("deposit", json!({ "amount": -5 }))
        .then_invalid("amount");
    AggregateTest::<Account>::given(vec![opened()])
        .when_payload("deposit", json!({}))
        .then_invalid("amount");
    AggregateTest::<Account>::given(vec![opened()])
        .when_payload("deposit", json!({ "amount": 5, "note": "rent" }))
        .then_expect_refusal(|refusal| {
            assert!(matches!(refusal, Refusal::Invalid(_)), "{refusal:?}");
        });
}
