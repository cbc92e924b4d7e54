//! Why a handler says no: the typed form of the WIT `refusal` variant.

use crate::__bindings::command::tessera::plugin0_2_0::types as wit;

/// A message about one field of a command's payload or a query's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A handler's refusal. The host answers `Invalid` with 422 `validation_failed` and
/// `Rejected` with 422 `rejected`; neither appends anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The input is malformed: one message per offending field.
    Invalid(Vec<FieldError>),
    /// The input is well formed but a business rule refuses it.
    Rejected { code: String, message: String },
    /// What the input asks for does not exist; the host answers 404 `not_found`.
    NotFound(String),
}

impl Refusal {
    /// A validation failure of a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// A business rule refusing the request, with a stable code clients can match on.
    pub fn rejected(code: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::Rejected {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Nothing matches what was asked for.
    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal::NotFound(message.into())
    }

    /// Turns a serde error on the input into a field-level validation failure.
    pub(crate) fn from_serde(
        error: serde_path_to_error::Error<serde_json::Error>,
        skip_segments: usize,
    ) -> Self {
        let message = error.inner().to_string();
        // serde_json appends where in the text the error is; for a payload the field
        // path says it better.
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        let mut field = error
            .path()
            .iter()
            .skip(skip_segments)
            .map(|segment| segment.to_string())
            .collect::<Vec<_>>()
            .join(".");
        // A missing field is reported at its parent; its name is in the message.
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            field = if field.is_empty() {
                missing.to_string()
            } else {
                format!("{field}.{missing}")
            };
        }
        if field.is_empty() {
            field = "payload".to_string();
        }
        Refusal::invalid(field, message)
    }
}

impl From<Refusal> for wit::Refusal {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(fields) => wit::Refusal::Invalid(
                fields
                    .into_iter()
                    .map(|f| wit::FieldError {
                        field: f.field,
                        message: f.message,
                    })
                    .collect(),
            ),
            Refusal::Rejected { code, message } => {
                wit::Refusal::Rejected(wit::Rejection { code, message })
            }
            Refusal::NotFound(message) => wit::Refusal::NotFound(message),
        }
    }
}
