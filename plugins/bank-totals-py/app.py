"""Example projection in Python: the bank-totals read model of plugins/bank-totals,
table for table and row for row: how many accounts are open, the sum of their balances,
and the deposits and withdrawals of each day (the UTC date of the event's timestamp).

Amounts are u64 and go to SQLite as the Rust projection sends them: within SQLite's
signed 64 bits as integers, past it as decimal text (which SQLite's arithmetic then
turns into a REAL), so both projections hold the same values, bit for bit.
"""

from tessera_sdk import Db, Envelope, EventDataError, Mode, Projection, projection


class BankTotals(Projection):
    name = "bank-totals"
    version = "0.1.0"
    schema_version = 1
    mode = Mode.ASYNC
    handles = ("AccountOpened", "Deposited", "Withdrawn")

    def setup(self, db: Db) -> None:
        db.execute(
            """CREATE TABLE totals (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                open_accounts INTEGER NOT NULL,
                total_balance INTEGER NOT NULL
            )"""
        )
        db.execute("INSERT INTO totals (id, open_accounts, total_balance) VALUES (1, 0, 0)")
        db.execute(
            """CREATE TABLE daily (
                day TEXT PRIMARY KEY,
                deposits INTEGER NOT NULL DEFAULT 0,
                deposit_count INTEGER NOT NULL DEFAULT 0,
                withdrawals INTEGER NOT NULL DEFAULT 0,
                withdrawal_count INTEGER NOT NULL DEFAULT 0
            )"""
        )

    def apply(self, db: Db, event: Envelope) -> None:
        # The day is the UTC date of the event's timestamp (RFC 3339).
        day = event.timestamp[:10] if len(event.timestamp) >= 10 else "unknown"
        if event.type == "AccountOpened":
            # Its data's fields are not needed, but it must be an object (as serde reads
            # the Rust projection's `AccountOpened {}`).
            if not (isinstance(event.data, dict) or event.data == []):
                raise EventDataError("invalid type, expected struct variant Event::AccountOpened")
            db.execute("UPDATE totals SET open_accounts = open_accounts + 1 WHERE id = 1")
        elif event.type == "Deposited":
            amount = event.u64("amount")
            db.execute("UPDATE totals SET total_balance = total_balance + ?1 WHERE id = 1", [amount])
            db.execute(
                """INSERT INTO daily (day, deposits, deposit_count) VALUES (?1, ?2, 1)
                   ON CONFLICT (day) DO UPDATE SET
                       deposits = deposits + excluded.deposits,
                       deposit_count = deposit_count + 1""",
                [day, amount],
            )
        elif event.type == "Withdrawn":
            amount = event.u64("amount")
            db.execute("UPDATE totals SET total_balance = total_balance - ?1 WHERE id = 1", [amount])
            db.execute(
                """INSERT INTO daily (day, withdrawals, withdrawal_count) VALUES (?1, ?2, 1)
                   ON CONFLICT (day) DO UPDATE SET
                       withdrawals = withdrawals + excluded.withdrawals,
                       withdrawal_count = withdrawal_count + 1""",
                [day, amount],
            )


Projector = projection(BankTotals)
