use std::fmt;

/// One reason an event was refused, tied to the place it applies to.
///
/// `field` is a JSON pointer into the event's `data` (e.g. `/riskAssessment/level`), or the
/// name of an envelope attribute prefixed with `@` (e.g. `@subject`) so that clients can
/// tell the two apart without a second list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }

    /// A violation of a CloudEvents envelope attribute rather than of the payload.
    pub fn attribute(name: &str, description: impl Into<String>) -> Self {
        Self::new(format!("@{name}"), description)
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() { "(event)" } else { &self.field };
        write!(f, "{field}: {}", self.description)
    }
}
