//! Query handlers: read-only answers from projections' read models, with one way to
//! page through lists.

use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::__bindings::command::tessera::plugin0_2_0::types as wit;
use crate::__bindings::query::tessera::plugin0_2_0::read_store;
use crate::Refusal;
use crate::sql::{Rows, Value, from_wit, to_wit};

/// Runs a read-only statement against the active version of `projection`, which must
/// be one of those the handler declared in [`QueryHandler::READS`]. The host refuses
/// anything that writes.
pub fn read(projection: &str, sql: &str, params: &[Value]) -> Result<Rows, Refusal> {
    if cfg!(not(target_arch = "wasm32")) {
        return Err(Refusal::rejected("read_failed", crate::projection::NO_HOST));
    }
    read_store::query(projection, sql, &to_wit(params))
        .map(from_wit)
        .map_err(|e| Refusal::rejected("read_failed", e))
}

/// A query handler: named queries over the projections it reads.
pub trait QueryHandler {
    /// The projections this handler reads.
    const READS: &'static [&'static str];
    /// The queries it answers.
    const QUERIES: &'static [&'static str];

    /// Answers the query `name` with a JSON value.
    fn handle(name: &str, params: Params) -> Result<Json, Refusal>;
}

/// A query's parameters: the query string of a GET (every value a string) or the JSON
/// object of a POST.
#[derive(Debug, Clone, Default)]
pub struct Params(Map<String, Json>);

impl Params {
    /// A parameter parsed from its text (or taken from a JSON number or bool).
    /// Missing is `Ok(None)`; unparsable is a validation failure on that field.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, Refusal> {
        let text = match self.0.get(name) {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        text.parse()
            .map(Some)
            .map_err(|_| Refusal::invalid(name, format!("{text:?} is not a valid {name}")))
    }

    /// Like [`Params::get`], but the parameter must be there.
    pub fn require<T: FromStr>(&self, name: &str) -> Result<T, Refusal> {
        self.get(name)?
            .ok_or_else(|| Refusal::invalid(name, "is required"))
    }

    /// The raw JSON object.
    pub fn as_json(&self) -> &Map<String, Json> {
        &self.0
    }
}

/// `limit` and `cursor` for a list query, parsed the same way by every handler.
#[derive(Debug, Clone)]
pub struct PageRequest<C> {
    pub limit: usize,
    /// Where the previous page ended; none for the first page.
    pub cursor: Option<C>,
}

impl<C: DeserializeOwned> PageRequest<C> {
    /// Reads `limit` (default `default_limit`, at most `max_limit`) and `cursor`.
    pub fn from_params(
        params: &Params,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<Self, Refusal> {
        let limit = params.get::<usize>("limit")?.unwrap_or(default_limit);
        if limit == 0 || limit > max_limit {
            return Err(Refusal::invalid(
                "limit",
                format!("must be between 1 and {max_limit}"),
            ));
        }
        let cursor = match params.get::<String>("cursor")? {
            None => None,
            Some(text) => Some(decode_cursor(&text).ok_or_else(|| {
                Refusal::invalid("cursor", "is not a cursor this query returned")
            })?),
        };
        Ok(PageRequest { limit, cursor })
    }
}

/// One page of a list: `{"items": [...], "next_cursor": ...}`; `next_cursor` is null on
/// the last page.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items`, fetched with one extra row to tell whether more follow:
    /// pass `limit + 1` rows and the cursor of the last item kept.
    pub fn from_rows<C: Serialize>(
        mut items: Vec<T>,
        limit: usize,
        cursor_of: impl Fn(&T) -> C,
    ) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more {
            items.last().map(|last| encode_cursor(&cursor_of(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// Cursors are opaque to clients: hex of the JSON of the position in the sort order.
fn encode_cursor<C: Serialize>(cursor: &C) -> String {
    let json = serde_json::to_vec(cursor).expect("cursor serializes");
    json.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor<C: DeserializeOwned>(text: &str) -> Option<C> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn describe<Q: QueryHandler>(name: &str, version: &str) -> wit::PluginInfo {
    wit::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        handles: Q::QUERIES.iter().map(|q| q.to_string()).collect(),
        details: wit::PluginDetails::QueryHandler(wit::QueryHandlerDetails {
            reads: Q::READS.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

pub fn handle<Q: QueryHandler>(name: String, params: String) -> Result<String, wit::Refusal> {
    let params = match serde_json::from_str::<Json>(&params) {
        Ok(Json::Object(map)) => Params(map),
        Ok(_) | Err(_) => {
            return Err(Refusal::invalid("params", "must be a JSON object").into());
        }
    };
    let answer = Q::handle(&name, params)?;
    Ok(answer.to_string())
}
