"""The account's rules as given/when/then tests, run natively with no host (the
Makefile's `python -m unittest` step runs them, as `cargo test` runs the Rust
bank-account's):

    python -m unittest discover -s plugins/bank-account-py/tests
"""

import sys
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "sdk-py"))
sys.path.insert(0, str(HERE.parent))

from app import MAX_BALANCE, BankAccount  # noqa: E402
from tessera_sdk import Event  # noqa: E402
from tessera_sdk.testing import AggregateTest  # noqa: E402

U64_MAX = (1 << 64) - 1
OPENED = Event("AccountOpened", {"owner": "ada"})


def account():
    return AggregateTest(BankAccount)


class Rules(unittest.TestCase):
    def test_an_account_is_opened_by_its_owner(self):
        account().given([]).when("open-account", {"owner": "ada"}).then([OPENED]).then_state(
            lambda state: self.assertEqual(state, {"owner": "ada", "balance": 0})
        )

    def test_an_account_needs_an_owner(self):
        account().given([]).when("open-account", {"owner": "  "}).then_invalid("owner", "must not be empty")

    def test_an_account_is_opened_once(self):
        account().given([OPENED]).when("open-account", {"owner": "grace"}).then_refused("account_already_open")

    def test_a_deposit_adds_to_the_balance(self):
        account().given([OPENED, Event("Deposited", {"amount": 10})]).when("deposit", {"amount": 5}).then(
            [Event("Deposited", {"amount": 5})]
        ).then_state(lambda state: self.assertEqual(state["balance"], 15))

    def test_money_moves_only_on_an_open_account(self):
        for command in ("deposit", "withdraw"):
            account().given([]).when(command, {"amount": 5}).then_refused("account_not_open")

    def test_amounts_are_positive(self):
        account().given([OPENED]).when("deposit", {"amount": 0}).then_invalid("amount")
        history = [OPENED, Event("Deposited", {"amount": 10})]
        account().given(history).when("withdraw", {"amount": 0}).then_invalid("amount")

    def test_a_withdrawal_never_overdraws(self):
        history = account().given([OPENED, Event("Deposited", {"amount": 10})])
        refusal = history.when("withdraw", {"amount": 11}).then_refused("insufficient_funds")
        self.assertEqual(refusal.message, "cannot withdraw 11: the balance is 10")
        history.when("withdraw", {"amount": 10}).then([Event("Withdrawn", {"amount": 10})]).then_state(
            lambda state: self.assertEqual(state["balance"], 0)
        )

    def test_withdrawals_count_against_the_balance(self):
        account().given(
            [OPENED, Event("Deposited", {"amount": 10}), Event("Withdrawn", {"amount": 7})]
        ).when("withdraw", {"amount": 4}).then_refused("insufficient_funds")

    def test_a_balance_stops_at_the_largest_amount_a_read_model_holds(self):
        history = account().given([OPENED, Event("Deposited", {"amount": 10})])
        history.when("deposit", {"amount": MAX_BALANCE - 10}).then([Event("Deposited", {"amount": MAX_BALANCE - 10})])
        refusal = history.when("deposit", {"amount": MAX_BALANCE - 9}).then_refused("balance_limit")
        self.assertEqual(
            refusal.message,
            "cannot deposit 9223372036854775798: the balance 10 would pass 9223372036854775807, "
            "the most an account holds",
        )
        # u64's largest does not wrap the balance around to something small.
        history.when("deposit", {"amount": U64_MAX}).then_refused("balance_limit")

    def test_only_the_owner_or_a_teller_withdraws(self):
        history = account().given([OPENED, Event("Deposited", {"amount": 10})])
        refusal = history.by("bob").when("withdraw", {"amount": 1}).then_refused("not_owner")
        self.assertEqual(refusal.message, "bob does not own this account")
        history.by("tom", roles=["teller"]).when("withdraw", {"amount": 1}).then([Event("Withdrawn", {"amount": 1})])
        history.by("ada").when("withdraw", {"amount": 1}).then([Event("Withdrawn", {"amount": 1})])

    def test_a_folded_balance_saturates(self):
        # A log written by other code must not take a balance out of u64's range.
        history = [OPENED, Event("Deposited", {"amount": U64_MAX}), Event("Deposited", {"amount": 5})]
        account().given(history).when("withdraw", {"amount": U64_MAX}).then([Event("Withdrawn", {"amount": U64_MAX})])


class Payloads(unittest.TestCase):
    """Payloads are decoded as the host decodes them, with serde's messages."""

    def refused(self, command, payload, field, message):
        account().given([OPENED]).when(command, payload).then_invalid(field, message)

    def test_payloads_that_do_not_fit_are_refused_naming_the_field(self):
        self.refused("deposit", '{"amount": -5}', "amount", "invalid value: integer `-5`, expected u64")
        self.refused("deposit", '{"amount": 1.5}', "amount", "invalid type: floating point `1.5`, expected u64")
        self.refused("deposit", '{"amount": 5.0}', "amount", "invalid type: floating point `5.0`, expected u64")
        self.refused("deposit", '{"amount": "5"}', "amount", 'invalid type: string "5", expected u64')
        self.refused("deposit", '{"amount": true}', "amount", "invalid type: boolean `true`, expected u64")
        self.refused("deposit", '{"amount": {"value": 5}}', "amount", "invalid type: map, expected u64")
        self.refused(
            "deposit", '{"amount": 18446744073709551616}', "amount",
            "invalid type: floating point `1.8446744073709552e+19`, expected u64",
        )
        self.refused("deposit", '{"note": "rent"}', "note", "unknown field `note`, expected `amount`")
        self.refused("deposit", "{}", "amount", "missing field `amount`")
        self.refused("open-account", '{"owner": null}', "owner", "invalid type: null, expected a string")
        self.refused("open-account", '{"owner": ["ada"]}', "owner", "invalid type: sequence, expected a string")
        self.refused("open-account", '{"owner": 5, "Owner": "ada"}', "Owner", "unknown field `Owner`, expected `owner`")

    def test_u64_amounts_are_exact(self):
        account().given([OPENED]).when("deposit", '{"amount": 9007199254740993}').then(
            [Event("Deposited", {"amount": 9007199254740993})]
        )
        # A key given twice keeps its last value, as serde_json's `Value` does.
        account().given([OPENED]).when("deposit", '{"amount": 5, "amount": 6}').then([Event("Deposited", {"amount": 6})])

    def test_an_unknown_command_is_invalid(self):
        account().given([]).when("close-account", {}).then_invalid("name", "unknown command close-account")

    def test_an_event_out_of_its_schema_fails_the_test(self):
        with self.assertRaises(AssertionError):
            account().given([OPENED]).when("deposit", {"amount": 5}).then([Event("Deposited", {"amount": 6})])
        with self.assertRaises(ValueError):
            account().given([OPENED]).when("deposit", {"amount": 5}).then([Event("Deposited", {"amount": -1})])


if __name__ == "__main__":
    unittest.main()
