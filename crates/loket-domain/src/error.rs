/// Errors of the domain vocabulary: a value that does not follow its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A partner id must be 1..=32 characters of lowercase ASCII letters, digits and '-'.
    #[error("invalid partner id {0:?}: use 1 to 32 lowercase letters, digits or '-'")]
    InvalidPartnerId(String),
    /// A case id is a V-number: exactly ten ASCII digits.
    #[error("invalid case id {0:?}: a V-number is exactly 10 digits")]
    InvalidCaseId(String),
}
