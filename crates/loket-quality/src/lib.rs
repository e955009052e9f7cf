//! loket's chain-wide quality measurement.
//!
//! * [`rules`]: quality rules beyond the JSON Schemas, CEL expressions declared next to the
//!   schemas (`schemas/rules/<type>.toml`), each with a severity (`reject` or `flag`).
//! * [`aggregate`]: the figures, pure: per day (UTC) × partner × event type, the events
//!   seen, per expected field how often it was filled, the completeness sum, failed flag
//!   rules, and rejections by kind. [`aggregate::Report`] merges them over a period.
//! * [`store`]: the figures kept durably in their own sled database, updated as events are
//!   accepted, and rebuilt from the journal on demand.

pub mod aggregate;
mod reads;
pub mod rules;
pub mod store;

pub use aggregate::{Accepted, Filter, Report};
pub use rules::{RuleFailure, RuleSet, Severity};
pub use store::QualityStore;

/// The crate's one error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rule files that cannot be used; every problem names its file and, where known, its rule.
    #[error("invalid quality rules:\n  {}", .0.join("\n  "))]
    Rules(Vec<String>),
    #[error("quality store failure: {0}")]
    Storage(#[from] sled::Error),
    #[error("quality store record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("journal failure during rebuild: {0}")]
    Journal(#[from] loket_journal::Error),
}
