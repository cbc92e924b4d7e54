//! Given/when/then tests for every rule of the example bank account.

mod common;

use common::{AggregateTest, plugins};
use serde_json::json;

fn account() -> AggregateTest {
    AggregateTest::new(plugins::BANK_ACCOUNT)
}

#[test]
fn opening_a_new_account_opens_it() {
    account()
        .when("open-account", json!({"owner": "ada"}))
        .then_events(&[("AccountOpened", json!({"owner": "ada"}))]);
}

#[test]
fn an_account_opens_only_once() {
    account()
        .given(&[("AccountOpened", json!({"owner": "ada"}))])
        .when("open-account", json!({"owner": "bob"}))
        .then_rejected("account_already_open");
}
