/**
 * Example projection in TypeScript: each account's owner, balance and version, exactly
 * as the Rust one in `plugins/account-balance` (same tables, same rows; the
 * differential test, `tests/differential.rs`, holds them to that).
 *
 * Besides the current row per account it keeps each account's balance history
 * (`from_position`..`to_position`), so that the `accounts` query can page through all
 * accounts as of one log position: a walk sees every account exactly once even while
 * deposits reorder them.
 */

import { fields, projection } from "@tessera/sdk";

export const projector = projection({
  name: "account-balance",
  version: "0.1.0",
  schemaVersion: 1,
  // Inline: a command's response waits for this read model, so a client reads its own
  // writes without asking.
  mode: "inline",
  events: {
    AccountOpened: { owner: fields.string },
    Deposited: { amount: fields.u64 },
    Withdrawn: { amount: fields.u64 },
  },

  setup(db) {
    db.execute(
      `CREATE TABLE accounts (
          id TEXT PRIMARY KEY,
          owner TEXT NOT NULL,
          balance INTEGER NOT NULL,
          version INTEGER NOT NULL,
          updated_at TEXT NOT NULL
      )`,
    );
    db.execute(
      `CREATE TABLE balance_history (
          id TEXT NOT NULL,
          balance INTEGER NOT NULL,
          from_position INTEGER NOT NULL,
          to_position INTEGER,
          PRIMARY KEY (id, from_position)
      ) WITHOUT ROWID`,
    );
    db.execute("CREATE INDEX balance_history_order ON balance_history (balance DESC, id)");
  },

  apply(db, { stream, version, position, timestamp, event }) {
    const id = stream.startsWith("account-") ? stream.slice("account-".length) : stream;
    let delta: bigint;
    switch (event.type) {
      case "AccountOpened":
        db.execute(
          `INSERT INTO accounts (id, owner, balance, version, updated_at)
           VALUES (?1, ?2, 0, ?3, ?4)`,
          [id, event.data.owner, version, timestamp],
        );
        db.execute("INSERT INTO balance_history (id, balance, from_position) VALUES (?1, 0, ?2)", [id, position]);
        return;
      // As the Rust one's `amount as i64`: an amount past i64 wraps (the bank never
      // accepts one, so this only matters for a log written by other code).
      case "Deposited":
        delta = BigInt.asIntN(64, event.data.amount);
        break;
      case "Withdrawn":
        delta = BigInt.asIntN(64, -BigInt.asIntN(64, event.data.amount));
        break;
    }
    db.execute(
      `UPDATE accounts SET balance = balance + ?2, version = ?3, updated_at = ?4
       WHERE id = ?1`,
      [id, delta, version, timestamp],
    );
    // The open history row is the account's latest: a seek on the primary key, where
    // `to_position IS NULL` would scan all of the account's rows.
    db.execute(
      `UPDATE balance_history SET to_position = ?2
       WHERE id = ?1 AND from_position =
           (SELECT MAX(from_position) FROM balance_history WHERE id = ?1)`,
      [id, position],
    );
    db.execute(
      `INSERT INTO balance_history (id, balance, from_position)
       SELECT id, balance, ?2 FROM accounts WHERE id = ?1`,
      [id, position],
    );
  },
});
