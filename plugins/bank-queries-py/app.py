"""Example query handler in Python: plugins/bank-queries, answer for answer.

- ``account`` (``id``): one account's owner, balance and version.
- ``accounts`` (``limit``, ``cursor``): every account, largest balance first, paged. A
  walk pages through the balances as of the position where its first page was read,
  so each account appears exactly once even while deposits reorder them. Its cursors
  are the Rust handler's, so a walk may even start on one and go on on the other.
- ``totals``: open accounts, the sum of balances, and each day's movements.

It reads the ``account-balance`` and ``bank-totals`` read models, whichever language
their projections are written in (the tables are the same).
"""

from tessera_sdk import Page, PageRequest, Params, QueryHandler, Refusal, format_float, query_handler, read

# Where a walk over `accounts` stands: the position it reads as of, and the last
# account it returned in (balance descending, id ascending) order. The order of the
# fields is the order of the Rust handler's cursor struct.
ACCOUNTS_CURSOR = {"as_of": "i64", "balance": "i64", "id": "string"}


class BankQueries(QueryHandler):
    name = "bank-queries"
    version = "0.1.0"
    reads = ("account-balance", "bank-totals")
    queries = ("account", "accounts", "totals")

    def handle(self, name: str, params: Params):
        if name == "account":
            return account(params)
        if name == "accounts":
            return accounts(params)
        if name == "totals":
            return totals()
        raise Refusal.not_found(f"no query named {name}")


def account(params: Params):
    id = params.require("id")
    row = read("account-balance", "SELECT * FROM accounts WHERE id = ?1", [id]).first()
    if row is None:
        raise Refusal.not_found(f"no account {id}")
    return row


def _fits(row: dict) -> dict:
    # The Rust handler reads each row into a struct of (String, String, i64); a row
    # that does not fit is refused the same way.
    for column, expected in (("id", "a string"), ("owner", "a string"), ("balance", "i64")):
        value = row.get(column)
        ok = isinstance(value, str) if expected == "a string" else isinstance(value, int) and -(1 << 63) <= value < 1 << 63
        if not ok:
            found = (
                f"floating point `{format_float(value)}`" if isinstance(value, float)
                else "null" if value is None
                else f"integer `{value}`" if isinstance(value, int)
                else f"string {value!r}"
            )
            raise Refusal.rejected("read_failed", f"row does not fit: invalid type: {found}, expected {expected}")
    return {"id": row["id"], "owner": row["owner"], "balance": row["balance"]}


def accounts(params: Params):
    page = PageRequest.from_params(params, 50, 500, cursor=ACCOUNTS_CURSOR)
    if page.cursor is not None:
        as_of = page.cursor["as_of"]
        after_balance, after_id = page.cursor["balance"], page.cursor["id"]
    else:
        as_of = read(
            "account-balance",
            "SELECT COALESCE(MAX(from_position), 0) AS as_of FROM balance_history",
        ).scalar()
        if not isinstance(as_of, int):
            as_of = 0
        after_balance = after_id = None
    rows = read(
        "account-balance",
        """SELECT h.id, a.owner, h.balance
           FROM balance_history h JOIN accounts a ON a.id = h.id
           WHERE h.from_position <= ?1 AND (h.to_position IS NULL OR h.to_position > ?1)
             AND (?2 IS NULL OR h.balance < ?2 OR (h.balance = ?2 AND h.id > ?3))
           ORDER BY h.balance DESC, h.id ASC
           LIMIT ?4""",
        [as_of, after_balance, after_id, page.limit + 1],
    )
    items = [_fits(row) for row in rows.dicts()]
    return Page.from_rows(
        items,
        page.limit,
        lambda last: {"as_of": as_of, "balance": last["balance"], "id": last["id"]},
    )


def totals():
    answer = read("bank-totals", "SELECT open_accounts, total_balance FROM totals WHERE id = 1").first()
    days = read(
        "bank-totals",
        """SELECT day, deposits, deposit_count, withdrawals, withdrawal_count
           FROM daily ORDER BY day""",
    ).dicts()
    if answer is None:
        answer = {"open_accounts": 0, "total_balance": 0}
    answer["days"] = days
    return answer


Querier = query_handler(BankQueries)
