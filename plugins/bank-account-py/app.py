"""Example command handler in Python: the bank account, exactly as the Rust one in
plugins/bank-account (the differential test, tests/differential.rs, holds them to that).

Rules: an account is opened once, by an owner; deposits and withdrawals need an open
account and a positive whole amount; a withdrawal never overdraws, and when the caller
is known (a principal), only the owner, or a verified `teller`, may withdraw
(`not_owner`); a deposit never takes the balance past `MAX_BALANCE` (`balance_limit`).
"""

from tessera_sdk import Command, CommandHandler, Event, Refusal, command_handler, fields

#: The most an account holds: the largest integer SQLite stores, so that every read
#: model keeping a balance as an INTEGER can hold it.
MAX_BALANCE = (1 << 63) - 1
U64_MAX = (1 << 64) - 1


class BankAccount(CommandHandler):
    name = "bank-account"
    version = "0.1.0"
    aggregate_type = "account"
    state = {"owner": fields.optional(fields.string), "balance": fields.u64}
    commands = {
        "open-account": {"owner": fields.string},
        "deposit": {"amount": fields.u64},
        "withdraw": {"amount": fields.u64},
    }
    # As the Rust `Command` enum's `deny_unknown_fields`: a typo is refused, not ignored.
    unknown_fields = "deny"
    events = {
        "AccountOpened": {"owner": fields.string},
        "Deposited": {"amount": fields.u64},
        "Withdrawn": {"amount": fields.u64},
    }

    def initial(self):
        return {"owner": None, "balance": 0}

    def apply(self, account, event):
        if event.type == "AccountOpened":
            account["owner"] = event.data["owner"]
        # Saturating, as the Rust one: `handle` never decides past the bounds, but a log
        # written by other code must not take a balance out of u64's range.
        elif event.type == "Deposited":
            account["balance"] = min(account["balance"] + event.data["amount"], U64_MAX)
        elif event.type == "Withdrawn":
            account["balance"] = max(account["balance"] - event.data["amount"], 0)

    def handle(self, account, command: Command, metadata):
        if command.name == "open-account":
            owner = command.payload["owner"]
            if owner.strip() == "":
                raise Refusal.invalid("owner", "must not be empty")
            if account["owner"] is not None:
                raise Refusal.rejected("account_already_open", "this account is already open")
            return [Event("AccountOpened", {"owner": owner})]
        amount = command.payload["amount"]
        if command.name == "deposit":
            positive(amount)
            require_open(account)
            balance = account["balance"]
            if amount > MAX_BALANCE - min(balance, MAX_BALANCE):
                raise Refusal.rejected(
                    "balance_limit",
                    f"cannot deposit {amount}: the balance {balance} would pass {MAX_BALANCE}, "
                    "the most an account holds",
                )
            return [Event("Deposited", {"amount": amount})]
        # withdraw
        positive(amount)
        require_open(account)
        # Only the owner takes money out, or a caller whose verified claims carry the
        # `teller` role. An anonymous caller (no principal) is not checked.
        principal = metadata.principal
        if principal is not None and account["owner"] != principal and not metadata.has_role("teller"):
            raise Refusal.rejected("not_owner", f"{principal} does not own this account")
        if amount > account["balance"]:
            raise Refusal.rejected(
                "insufficient_funds", f"cannot withdraw {amount}: the balance is {account['balance']}"
            )
        return [Event("Withdrawn", {"amount": amount})]


def require_open(account) -> None:
    if account["owner"] is None:
        raise Refusal.rejected("account_not_open", "open the account first")


def positive(amount: int) -> None:
    if amount == 0:
        raise Refusal.invalid("amount", "must be a positive integer")


Aggregate = command_handler(BankAccount)
