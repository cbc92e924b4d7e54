//! The rules every JSON document crossing the host obeys, whoever sent it: a client's
//! payload or a guest's event data, state or answer. A document is well-formed and
//! nests at most [`MAX_DEPTH`] deep, so that every reader of the log can parse it.

use serde_json::value::RawValue;

/// How deeply arrays and objects may nest.
pub const MAX_DEPTH: usize = 64;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("it is not JSON: {0}")]
    Malformed(String),
    #[error("it nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Checks `text` and keeps it as it is.
pub fn checked(text: String) -> Result<Box<RawValue>, JsonError> {
    if depth(&text) > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    RawValue::from_string(text).map_err(|e| JsonError::Malformed(e.to_string()))
}

/// Checks `text` without copying it.
pub fn check(text: &str) -> Result<(), JsonError> {
    // Depth first: it is cheap, and the parser's own recursion limit has a message
    // that does not say what the rule is.
    if depth(text) > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    serde_json::from_str::<&RawValue>(text)
        .map(drop)
        .map_err(|e| JsonError::Malformed(e.to_string()))
}

/// How deeply arrays and objects nest in a JSON text (outside strings).
pub fn depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::{JsonError, checked, depth};

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth("1"), 0);
        assert_eq!(depth(r#"{"a": [1, {"b": 2}]}"#), 3);
        assert_eq!(depth(r#"{"a": "[[[[\"]]]"}"#), 1);
        assert_eq!(
            depth(&format!("{}{}", "[".repeat(100), "]".repeat(100))),
            100
        );
    }

    #[test]
    fn checked_refuses_malformed_and_deep_documents() {
        assert!(checked(r#"{"a": 1}"#.into()).is_ok());
        assert!(matches!(
            checked("{not json".into()),
            Err(JsonError::Malformed(_))
        ));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(checked(deep).unwrap_err(), JsonError::TooDeep);
        let fine = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(checked(fine).is_ok());
    }
}
