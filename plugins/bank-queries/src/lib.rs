//! Example query handler for the bank's read models.
//!
//! - `account` (`id`): one account's owner, balance and version.
//! - `accounts` (`limit`, `cursor`): every account, largest balance first, paged. A
//!   walk pages through the balances as of the position where its first page was
//!   read, so each account appears exactly once even while deposits reorder them.
//! - `totals`: open accounts, the sum of balances, and each day's movements.

use serde::{Deserialize, Serialize};
use tessera_sdk::{Json, Page, PageRequest, Params, QueryHandler, Refusal, json, params, read};

pub struct BankQueries;

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    id: String,
    owner: String,
    balance: i64,
}

/// Where a walk over `accounts` stands: the position it reads as of, and the last
/// account it returned in (balance descending, id ascending) order.
#[derive(Debug, Serialize, Deserialize)]
struct AccountsCursor {
    as_of: i64,
    balance: i64,
    id: String,
}

impl QueryHandler for BankQueries {
    const READS: &'static [&'static str] = &["account-balance", "bank-totals"];
    const QUERIES: &'static [&'static str] = &["account", "accounts", "totals"];

    fn handle(name: &str, params: Params) -> Result<Json, Refusal> {
        match name {
            "account" => account(&params),
            "accounts" => accounts(&params),
            "totals" => totals(),
            other => Err(Refusal::not_found(format!("no query named {other}"))),
        }
    }
}

fn account(params: &Params) -> Result<Json, Refusal> {
    let id: String = params.require("id")?;
    let rows = read(
        "account-balance",
        "SELECT * FROM accounts WHERE id = ?1",
        params![&id],
    )?;
    rows.to_json()
        .into_iter()
        .next()
        .ok_or_else(|| Refusal::not_found(format!("no account {id}")))
}

fn accounts(params: &Params) -> Result<Json, Refusal> {
    let page = PageRequest::<AccountsCursor>::from_params(params, 50, 500)?;
    let as_of = match &page.cursor {
        Some(cursor) => cursor.as_of,
        None => {
            let rows = read(
                "account-balance",
                "SELECT COALESCE(MAX(from_position), 0) AS as_of FROM balance_history",
                params![],
            )?;
            match rows.rows.first().and_then(|row| row.first()) {
                Some(tessera_sdk::sql::Value::Integer(as_of)) => *as_of,
                _ => 0,
            }
        }
    };
    let (after_balance, after_id) = match &page.cursor {
        Some(cursor) => (Some(cursor.balance), Some(cursor.id.clone())),
        None => (None, None),
    };
    let rows = read(
        "account-balance",
        "SELECT h.id, a.owner, h.balance
         FROM balance_history h JOIN accounts a ON a.id = h.id
         WHERE h.from_position <= ?1 AND (h.to_position IS NULL OR h.to_position > ?1)
           AND (?2 IS NULL OR h.balance < ?2 OR (h.balance = ?2 AND h.id > ?3))
         ORDER BY h.balance DESC, h.id ASC
         LIMIT ?4",
        params![as_of, after_balance, after_id, (page.limit + 1) as i64],
    )?;
    let items: Vec<Account> = rows.to().map_err(|e| Refusal::rejected("read_failed", e))?;
    let page = Page::from_rows(items, page.limit, |last| AccountsCursor {
        as_of,
        balance: last.balance,
        id: last.id.clone(),
    });
    Ok(json!(page))
}

fn totals() -> Result<Json, Refusal> {
    let totals = read(
        "bank-totals",
        "SELECT open_accounts, total_balance FROM totals WHERE id = 1",
        params![],
    )?;
    let days = read(
        "bank-totals",
        "SELECT day, deposits, deposit_count, withdrawals, withdrawal_count
         FROM daily ORDER BY day",
        params![],
    )?;
    let mut answer = totals
        .to_json()
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({ "open_accounts": 0, "total_balance": 0 }));
    answer["days"] = Json::Array(days.to_json());
    Ok(answer)
}

tessera_sdk::query_handler!(BankQueries);
