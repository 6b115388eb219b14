//! The refusal of a request field: which field, and what is wrong with it. Services wrap it in
//! their own error enum (`#[error(transparent)]`), so the client sees `field: message` from
//! whichever service refused.

use std::fmt;

/// A field of a request that is malformed; shown as `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl InvalidField {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidField {}
