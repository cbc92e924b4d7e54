/**
 * Example query handler in TypeScript for the bank's read models, answer for answer
 * the Rust one in `plugins/bank-queries` (the differential test, `tests/differential.rs`,
 * holds them to that; its cursors are the Rust handler's, so a walk may start on one
 * and go on on the other).
 *
 * - `account` (`id`): one account's owner, balance and version.
 * - `accounts` (`limit`, `cursor`): every account, largest balance first, paged. A walk
 *   pages through the balances as of the position where its first page was read, so
 *   each account appears exactly once even while deposits reorder them.
 * - `totals`: open accounts, the sum of balances, and each day's movements.
 */

import { Params, Refusal, fields, pageFromRows, pageRequest, queryHandler, read, rowsAs } from "@tessera/sdk";

/** An account as `accounts` lists it (the Rust handler's `Account` struct). */
const ACCOUNT = { id: fields.string, owner: fields.string, balance: fields.i64 };

/**
 * Where a walk over `accounts` stands: the position it reads as of, and the last account
 * it returned in (balance descending, id ascending) order; its fields in the order of
 * the Rust handler's cursor struct.
 */
const ACCOUNTS_CURSOR = { as_of: fields.i64, balance: fields.i64, id: fields.string };

export const querier = queryHandler({
  name: "bank-queries",
  version: "0.1.0",
  reads: ["account-balance", "bank-totals"],
  queries: ["account", "accounts", "totals"],

  handle(name, params) {
    switch (name) {
      case "account":
        return account(params);
      case "accounts":
        return accounts(params);
      case "totals":
        return totals();
      default:
        throw Refusal.notFound(`no query named ${name}`);
    }
  },
});

function account(params: Params) {
  const id = params.require("id");
  const row = read("account-balance", "SELECT * FROM accounts WHERE id = ?1", [id]).first();
  if (row === null) throw Refusal.notFound(`no account ${id}`);
  return row;
}

function accounts(params: Params) {
  const page = pageRequest(params, 50, 500, ACCOUNTS_CURSOR);
  let asOf: bigint;
  if (page.cursor !== null) {
    asOf = page.cursor.as_of;
  } else {
    const found = read(
      "account-balance",
      "SELECT COALESCE(MAX(from_position), 0) AS as_of FROM balance_history",
    ).scalar();
    asOf = typeof found === "bigint" ? found : 0n;
  }
  const rows = read(
    "account-balance",
    `SELECT h.id, a.owner, h.balance
     FROM balance_history h JOIN accounts a ON a.id = h.id
     WHERE h.from_position <= ?1 AND (h.to_position IS NULL OR h.to_position > ?1)
       AND (?2 IS NULL OR h.balance < ?2 OR (h.balance = ?2 AND h.id > ?3))
     ORDER BY h.balance DESC, h.id ASC
     LIMIT ?4`,
    [asOf, page.cursor?.balance ?? null, page.cursor?.id ?? null, BigInt(page.limit + 1)],
  );
  const items = rowsAs(rows, ACCOUNT);
  return pageFromRows(items, page.limit, ACCOUNTS_CURSOR, (last) => ({
    as_of: asOf,
    balance: last.balance,
    id: last.id,
  }));
}

function totals() {
  const answer = read("bank-totals", "SELECT open_accounts, total_balance FROM totals WHERE id = 1").first() ?? {
    open_accounts: 0n,
    total_balance: 0n,
  };
  const days = read(
    "bank-totals",
    `SELECT day, deposits, deposit_count, withdrawals, withdrawal_count
     FROM daily ORDER BY day`,
  ).objects();
  return { ...answer, days };
}
