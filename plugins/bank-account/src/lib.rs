//! Example command handler: a bank account.
//!
//! Rules: an account is opened once, by an owner; deposits and withdrawals need an
//! open account and a positive whole amount; a withdrawal never overdraws, and when
//! the caller is known (a principal), only the owner, or a verified `teller`, may
//! withdraw (`not_owner`); a deposit never takes the balance past [`MAX_BALANCE`]
//! (`balance_limit`).

use serde::{Deserialize, Serialize};
use tessera_sdk::{Aggregate, Metadata, Refusal};

/// The most an account holds: the largest integer SQLite stores, so that every read
/// model keeping a balance as an INTEGER can hold it.
pub const MAX_BALANCE: u64 = i64::MAX as u64;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    owner: Option<String>,
    balance: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    OpenAccount { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    AccountOpened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Aggregate for Account {
    const AGGREGATE_TYPE: &'static str = "account";
    type Command = Command;
    type Event = Event;

    fn apply(&mut self, event: Event) {
        match event {
            Event::AccountOpened { owner } => self.owner = Some(owner),
            // Saturating: `handle` never decides past the bounds, but a log written by
            // other code must not wrap a balance around.
            Event::Deposited { amount } => self.balance = self.balance.saturating_add(amount),
            Event::Withdrawn { amount } => self.balance = self.balance.saturating_sub(amount),
        }
    }

    fn handle(&self, command: Command, metadata: &Metadata) -> Result<Vec<Event>, Refusal> {
        match command {
            Command::OpenAccount { owner } => {
                if owner.trim().is_empty() {
                    return Err(Refusal::invalid("owner", "must not be empty"));
                }
                if self.owner.is_some() {
                    return Err(Refusal::rejected(
                        "account_already_open",
                        "this account is already open",
                    ));
                }
                Ok(vec![Event::AccountOpened { owner }])
            }
            Command::Deposit { amount } => {
                positive(amount)?;
                self.require_open()?;
                if amount > MAX_BALANCE - self.balance.min(MAX_BALANCE) {
                    return Err(Refusal::rejected(
                        "balance_limit",
                        format!(
                            "cannot deposit {amount}: the balance {} would pass {MAX_BALANCE}, the most an account holds",
                            self.balance
                        ),
                    ));
                }
                Ok(vec![Event::Deposited { amount }])
            }
            Command::Withdraw { amount } => {
                positive(amount)?;
                self.require_open()?;
                // Only the owner takes money out, or a caller whose verified claims
                // carry the `teller` role. An anonymous caller (a host that does not
                // authenticate, and no principal named) is not checked.
                if let Some(principal) = &metadata.principal
                    && self.owner.as_deref() != Some(principal.as_str())
                    && !metadata.has_role("teller")
                {
                    return Err(Refusal::rejected(
                        "not_owner",
                        format!("{principal} does not own this account"),
                    ));
                }
                if amount > self.balance {
                    return Err(Refusal::rejected(
                        "insufficient_funds",
                        format!("cannot withdraw {amount}: the balance is {}", self.balance),
                    ));
                }
                Ok(vec![Event::Withdrawn { amount }])
            }
        }
    }
}

impl Account {
    fn require_open(&self) -> Result<(), Refusal> {
        match self.owner {
            Some(_) => Ok(()),
            None => Err(Refusal::rejected(
                "account_not_open",
                "open the account first",
            )),
        }
    }
}

fn positive(amount: u64) -> Result<(), Refusal> {
    if amount == 0 {
        return Err(Refusal::invalid("amount", "must be a positive integer"));
    }
    Ok(())
}

tessera_sdk::command_handler!(Account);

#[cfg(test)]
mod tests;
