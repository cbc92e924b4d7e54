/**
 * Example command handler in TypeScript: the bank account, exactly as the Rust one in
 * `plugins/bank-account` (the differential test, `tests/differential.rs`, holds them to
 * that).
 *
 * Rules: an account is opened once, by an owner; deposits and withdrawals need an open
 * account and a positive whole amount; a withdrawal never overdraws, and when the
 * caller is known (a principal), only the owner, or a verified `teller`, may withdraw
 * (`not_owner`); a deposit never takes the balance past `MAX_BALANCE` (`balance_limit`).
 */

import { commandHandler, fields, Refusal } from "@tessera/sdk";

type Account = { owner: string | null; balance: bigint };

/** The most an account holds: the largest integer SQLite stores, so that every read
 * model keeping a balance as an INTEGER can hold it. */
export const MAX_BALANCE = 9223372036854775807n;
const U64_MAX = 18446744073709551615n;

export const aggregate = commandHandler({
  name: "bank-account",
  version: "0.1.0",
  aggregateType: "account",
  state: { owner: fields.optional(fields.string), balance: fields.u64 },
  initial: (): Account => ({ owner: null, balance: 0n }),
  commands: {
    "open-account": { owner: fields.string },
    deposit: { amount: fields.u64 },
    withdraw: { amount: fields.u64 },
  },
  // As the Rust `Command` enum's `deny_unknown_fields`: a typo is refused, not ignored.
  unknownFields: "deny",
  events: {
    AccountOpened: { owner: fields.string },
    Deposited: { amount: fields.u64 },
    Withdrawn: { amount: fields.u64 },
  },

  apply(account, event) {
    switch (event.type) {
      case "AccountOpened":
        account.owner = event.data.owner;
        break;
      // Saturating, as the Rust one: `handle` never decides past the bounds, but a log
      // written by other code must not take a balance out of u64's range.
      case "Deposited": {
        const sum = account.balance + event.data.amount;
        account.balance = sum > U64_MAX ? U64_MAX : sum;
        break;
      }
      case "Withdrawn": {
        const rest = account.balance - event.data.amount;
        account.balance = rest < 0n ? 0n : rest;
        break;
      }
    }
  },

  handle(account, command, metadata) {
    switch (command.name) {
      case "open-account": {
        const { owner } = command.payload;
        if (owner.trim() === "") throw Refusal.invalid("owner", "must not be empty");
        if (account.owner !== null) {
          throw Refusal.rejected("account_already_open", "this account is already open");
        }
        return [{ type: "AccountOpened", data: { owner } }];
      }
      case "deposit": {
        const { amount } = command.payload;
        positive(amount);
        requireOpen(account);
        const room = MAX_BALANCE - (account.balance < MAX_BALANCE ? account.balance : MAX_BALANCE);
        if (amount > room) {
          throw Refusal.rejected(
            "balance_limit",
            `cannot deposit ${amount}: the balance ${account.balance} would pass ${MAX_BALANCE}, the most an account holds`,
          );
        }
        return [{ type: "Deposited", data: { amount } }];
      }
      case "withdraw": {
        const { amount } = command.payload;
        positive(amount);
        requireOpen(account);
        // Only the owner takes money out, or a caller whose verified claims carry the
        // `teller` role. An anonymous caller (no principal) is not checked.
        const principal = metadata.principal;
        if (principal !== null && account.owner !== principal && !metadata.hasRole("teller")) {
          throw Refusal.rejected("not_owner", `${principal} does not own this account`);
        }
        if (amount > account.balance) {
          throw Refusal.rejected(
            "insufficient_funds",
            `cannot withdraw ${amount}: the balance is ${account.balance}`,
          );
        }
        return [{ type: "Withdrawn", data: { amount } }];
      }
    }
  },
});

function requireOpen(account: Readonly<Account>): void {
  if (account.owner === null) throw Refusal.rejected("account_not_open", "open the account first");
}

function positive(amount: bigint): void {
  if (amount === 0n) throw Refusal.invalid("amount", "must be a positive integer");
}
