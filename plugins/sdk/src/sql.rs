//! SQL values and rows as plugins see them, with serde mapping of rows to structs.

use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value as Json};

use crate::__bindings::projection::tessera::plugin0_2_0::sql_types as wit;

/// A SQL value: what a parameter can be and what a column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // SQLite integers are signed 64-bit; larger values are stored as text so they
        // are never silently wrapped.
        i64::try_from(v).map_or_else(|_| Value::Text(v.to_string()), Value::Integer)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `params![id, amount]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($value)),*][..]
    };
}

/// The rows a statement returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Each row as a JSON object keyed by column name.
    pub fn to_json(&self) -> Vec<Json> {
        self.rows
            .iter()
            .map(|row| {
                Json::Object(
                    self.columns
                        .iter()
                        .cloned()
                        .zip(row.iter().map(value_to_json))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect()
    }

    /// Each row deserialized into `T`, fields matched to column names.
    pub fn to<T: DeserializeOwned>(&self) -> Result<Vec<T>, String> {
        self.to_json()
            .into_iter()
            .map(|row| serde_json::from_value(row).map_err(|e| format!("row does not fit: {e}")))
            .collect()
    }
}

fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::Number((*i).into()),
        Value::Real(r) => Number::from_f64(*r).map_or(Json::Null, Json::Number),
        Value::Text(t) => Json::String(t.clone()),
        Value::Blob(b) => Json::Array(b.iter().map(|byte| Json::from(*byte)).collect()),
    }
}

pub(crate) fn to_wit(params: &[Value]) -> Vec<wit::Value> {
    params
        .iter()
        .map(|value| match value {
            Value::Null => wit::Value::Null,
            Value::Integer(i) => wit::Value::Integer(*i),
            Value::Real(r) => wit::Value::Real(*r),
            Value::Text(t) => wit::Value::Text(t.clone()),
            Value::Blob(b) => wit::Value::Blob(b.clone()),
        })
        .collect()
}

pub(crate) fn from_wit(rows: wit::Rows) -> Rows {
    Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|value| match value {
                        wit::Value::Null => Value::Null,
                        wit::Value::Integer(i) => Value::Integer(i),
                        wit::Value::Real(r) => Value::Real(r),
                        wit::Value::Text(t) => Value::Text(t),
                        wit::Value::Blob(b) => Value::Blob(b),
                    })
                    .collect()
            })
            .collect(),
    }
}
