//! Given/when/then tests for every rule of the example bank account, straight through
//! the plugin runtime (no HTTP, no store): the events already in the stream, a command,
//! and the events or refusal the handler decides on.

use crate::common::{AggregateTest, plugins};
use serde_json::{Value, json};

fn account() -> AggregateTest {
    AggregateTest::new(plugins::BANK_ACCOUNT)
}

fn opened(owner: &str) -> (&'static str, Value) {
    ("AccountOpened", json!({ "owner": owner }))
}

fn deposited(amount: u64) -> (&'static str, Value) {
    ("Deposited", json!({ "amount": amount }))
}

fn withdrawn(amount: u64) -> (&'static str, Value) {
    ("Withdrawn", json!({ "amount": amount }))
}

/// An open account holding `balance`.
fn account_with(balance: u64) -> AggregateTest {
    account().given(&[opened("ada"), deposited(balance)])
}

// --- Opening ---------------------------------------------------------------------

#[test]
fn opening_a_new_account_opens_it() {
    account()
        .when("open-account", json!({"owner": "ada"}))
        .then_events(&[opened("ada")]);
}

#[test]
fn an_account_opens_only_once() {
    account()
        .given(&[opened("ada")])
        .when("open-account", json!({"owner": "bob"}))
        .then_rejected("account_already_open");
}

#[test]
fn reopening_is_rejected_even_after_deposits_and_withdrawals() {
    account()
        .given(&[opened("ada"), deposited(5), withdrawn(5)])
        .when("open-account", json!({"owner": "ada"}))
        .then_rejected("account_already_open");
}

#[test]
fn an_empty_owner_is_invalid() {
    account()
        .when("open-account", json!({"owner": ""}))
        .then_invalid("owner");
}

#[test]
fn a_blank_owner_is_invalid() {
    account()
        .when("open-account", json!({"owner": "  \t "}))
        .then_invalid("owner");
}

#[test]
fn a_missing_owner_is_invalid() {
    account()
        .when("open-account", json!({}))
        .then_invalid("owner");
}

#[test]
fn an_owner_that_is_not_a_string_is_invalid() {
    account()
        .when("open-account", json!({"owner": 7}))
        .then_invalid("owner");
}

#[test]
fn an_empty_owner_is_invalid_even_on_an_open_account() {
    // Malformed input is reported as such before any business rule is consulted.
    account()
        .given(&[opened("ada")])
        .when("open-account", json!({"owner": ""}))
        .then_invalid("owner");
}

// --- Deposits and withdrawals need an open account ---------------------------------

#[test]
fn depositing_into_an_account_that_was_never_opened_is_rejected() {
    account()
        .when("deposit", json!({"amount": 5}))
        .then_rejected("account_not_open");
}

#[test]
fn withdrawing_from_an_account_that_was_never_opened_is_rejected() {
    account()
        .when("withdraw", json!({"amount": 5}))
        .then_rejected("account_not_open");
}

#[test]
fn depositing_into_an_open_account_deposits() {
    account()
        .given(&[opened("ada")])
        .when("deposit", json!({"amount": 5}))
        .then_events(&[deposited(5)]);
}

// --- Amounts must be positive integers -----------------------------------------------

/// Amounts that are not positive integers, each with why.
fn bad_amounts() -> Vec<(&'static str, Value)> {
    vec![
        ("zero", json!({"amount": 0})),
        ("negative", json!({"amount": -3})),
        ("fractional", json!({"amount": 1.5})),
        ("a string", json!({"amount": "5"})),
        ("null", json!({"amount": null})),
        ("missing", json!({})),
    ]
}

#[test]
fn a_deposit_of_anything_but_a_positive_integer_is_invalid_on_amount() {
    for (why, payload) in bad_amounts() {
        eprintln!("deposit with an amount that is {why}: {payload}");
        account_with(10)
            .when("deposit", payload)
            .then_invalid("amount");
    }
}

#[test]
fn a_withdrawal_of_anything_but_a_positive_integer_is_invalid_on_amount() {
    for (why, payload) in bad_amounts() {
        eprintln!("withdrawal with an amount that is {why}: {payload}");
        account_with(10)
            .when("withdraw", payload)
            .then_invalid("amount");
    }
}

#[test]
fn a_bad_amount_is_invalid_even_on_an_account_that_is_not_open() {
    // Validation comes before the business rules: the client learns to fix its input
    // first.
    account()
        .when("deposit", json!({"amount": 0}))
        .then_invalid("amount");
    account()
        .when("withdraw", json!({"amount": "ten"}))
        .then_invalid("amount");
}

#[test]
fn an_unknown_payload_field_is_invalid() {
    account()
        .given(&[opened("ada")])
        .when("deposit", json!({"amount": 1, "currency": "EUR"}))
        .then_invalid("currency");
}

#[test]
fn the_smallest_and_the_largest_amount_are_accepted() {
    // The largest balance is i64's largest, so that read models keeping it as a
    // SQLite INTEGER can hold it; u64's largest is refused rather than wrapped.
    let largest = i64::MAX as u64;
    account()
        .given(&[opened("ada")])
        .when("deposit", json!({"amount": 1}))
        .then_events(&[deposited(1)]);
    account()
        .given(&[opened("ada")])
        .when("deposit", json!({"amount": largest}))
        .then_events(&[deposited(largest)]);
    account()
        .given(&[opened("ada"), deposited(1)])
        .when("deposit", json!({"amount": largest}))
        .then_rejected("balance_limit");
    account()
        .given(&[opened("ada")])
        .when("deposit", json!({"amount": u64::MAX}))
        .then_rejected("balance_limit");
}

// --- No overdraft ----------------------------------------------------------------

#[test]
fn withdrawing_more_than_the_balance_is_rejected() {
    account_with(10)
        .when("withdraw", json!({"amount": 11}))
        .then_rejected("insufficient_funds");
}

#[test]
fn withdrawing_from_an_empty_open_account_is_rejected() {
    account()
        .given(&[opened("ada")])
        .when("withdraw", json!({"amount": 1}))
        .then_rejected("insufficient_funds");
}

#[test]
fn withdrawing_exactly_the_balance_works() {
    account_with(10)
        .when("withdraw", json!({"amount": 10}))
        .then_events(&[withdrawn(10)]);
}

#[test]
fn withdrawing_less_than_the_balance_works() {
    account_with(10)
        .when("withdraw", json!({"amount": 3}))
        .then_events(&[withdrawn(3)]);
}

// --- Folding sequences ------------------------------------------------------------

#[test]
fn deposits_add_up() {
    // 3 + 4 + 5 = 12: all of it can be withdrawn, one more cannot.
    let history = [opened("ada"), deposited(3), deposited(4), deposited(5)];
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 12}))
        .then_events(&[withdrawn(12)]);
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 13}))
        .then_rejected("insufficient_funds");
}

#[test]
fn withdrawals_are_subtracted() {
    // 10 - 4 + 6 - 7 = 5.
    let history = [
        opened("ada"),
        deposited(10),
        withdrawn(4),
        deposited(6),
        withdrawn(7),
    ];
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 5}))
        .then_events(&[withdrawn(5)]);
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 6}))
        .then_rejected("insufficient_funds");
}

#[test]
fn an_account_emptied_to_zero_refuses_any_withdrawal_but_takes_deposits() {
    let history = [opened("ada"), deposited(7), withdrawn(7)];
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 1}))
        .then_rejected("insufficient_funds");
    account()
        .given(&history)
        .when("deposit", json!({"amount": 2}))
        .then_events(&[deposited(2)]);
}

#[test]
fn a_long_sequence_folds_to_the_right_balance() {
    // 100 deposits of 1, then 40 withdrawals of 1: the balance is 60.
    let mut history = vec![opened("ada")];
    history.extend((0..100).map(|_| deposited(1)));
    history.extend((0..40).map(|_| withdrawn(1)));
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 61}))
        .then_rejected("insufficient_funds");
    account()
        .given(&history)
        .when("withdraw", json!({"amount": 60}))
        .then_events(&[withdrawn(60)]);
}
