/**
 * The account's rules as given/when/then tests, run natively by `npm test` (the SDK's
 * `tessera-test`: `node --test`, no host), as `plugins/bank-account/src/tests.rs` tests
 * the Rust one. Each call goes through the handler's component interface, JSON and all.
 */

import { test } from "node:test";
import { given } from "@tessera/sdk/testing";
import { MAX_BALANCE, aggregate } from "../src/index";

const opened = { type: "AccountOpened", data: { owner: "ada" } } as const;
const deposited = (amount: bigint) => ({ type: "Deposited", data: { amount } }) as const;

test("an account is opened by its owner", () =>
  given(aggregate, []).when({ name: "open-account", payload: { owner: "ada" } }).then([opened]));

test("an account needs an owner", () =>
  given(aggregate, [])
    .when({ name: "open-account", payload: { owner: "  " } })
    .thenInvalid("owner", "must not be empty"));

test("an account is opened once", () =>
  given(aggregate, [opened]).when({ name: "open-account", payload: { owner: "bob" } }).thenRefused("account_already_open"));

test("a deposit adds to the balance", () =>
  given(aggregate, [opened, deposited(10n)]).when({ name: "deposit", payload: { amount: 5n } }).then([deposited(5n)]));

test("money moves only on an open account", () => {
  given(aggregate, []).when({ name: "deposit", payload: { amount: 5n } }).thenRefused("account_not_open");
  given(aggregate, []).when({ name: "withdraw", payload: { amount: 5n } }).thenRefused("account_not_open");
});

test("amounts are positive", () => {
  given(aggregate, [opened]).when({ name: "deposit", payload: { amount: 0n } }).thenInvalid("amount");
  given(aggregate, [opened, deposited(10n)]).when({ name: "withdraw", payload: { amount: 0n } }).thenInvalid("amount");
});

test("a withdrawal never overdraws", () => {
  const history = [opened, deposited(10n)];
  given(aggregate, history).when({ name: "withdraw", payload: { amount: 11n } }).thenRefused("insufficient_funds");
  given(aggregate, history)
    .when({ name: "withdraw", payload: { amount: 10n } })
    .then([{ type: "Withdrawn", data: { amount: 10n } }]);
});

test("withdrawals count against the balance", () =>
  given(aggregate, [opened, deposited(10n), { type: "Withdrawn", data: { amount: 7n } }])
    .when({ name: "withdraw", payload: { amount: 4n } })
    .thenRefused("insufficient_funds"));

test("a balance stops at the largest amount a read model holds", () => {
  const history = [opened, deposited(10n)];
  given(aggregate, history)
    .when({ name: "deposit", payload: { amount: MAX_BALANCE - 10n } })
    .then([deposited(MAX_BALANCE - 10n)]);
  given(aggregate, history).when({ name: "deposit", payload: { amount: MAX_BALANCE - 9n } }).thenRefused("balance_limit");
  given(aggregate, history)
    .when({ name: "deposit", payload: { amount: 18446744073709551615n } })
    .thenRefused("balance_limit");
});

test("only the owner or a teller withdraws", () => {
  const history = [opened, deposited(10n)];
  given(aggregate, history).by("bob").when({ name: "withdraw", payload: { amount: 1n } }).thenRefused("not_owner");
  given(aggregate, history)
    .by("tom", ["teller"])
    .when({ name: "withdraw", payload: { amount: 1n } })
    .then([{ type: "Withdrawn", data: { amount: 1n } }]);
  given(aggregate, history)
    .by("ada")
    .when({ name: "withdraw", payload: { amount: 1n } })
    .then([{ type: "Withdrawn", data: { amount: 1n } }]);
});

test("payloads are decoded as the host decodes them", () => {
  given(aggregate, [opened]).whenPayload("deposit", '{"amount": 5}').then([deposited(5n)]);
  given(aggregate, [opened])
    .whenPayload("deposit", '{"amount": 18446744073709551615}')
    .thenRefused("balance_limit");
  given(aggregate, [opened])
    .whenPayload("deposit", '{"amount": -5}')
    .thenInvalid("amount", "invalid value: integer `-5`, expected u64");
  given(aggregate, [opened]).whenPayload("deposit", "{}").thenInvalid("amount", "missing field `amount`");
  given(aggregate, [opened])
    .whenPayload("deposit", '{"amount": 5, "note": "rent"}')
    .thenInvalid("note", "unknown field `note`, expected `amount`");
  given(aggregate, [opened])
    .whenPayload("deposit", '{"amount": 5.0}')
    .thenInvalid("amount", "invalid type: floating point `5.0`, expected u64");
});
