//! loket's chain-wide quality measurement.
//!
//! * [`rules`]: quality rules beyond the JSON Schemas, CEL expressions declared next to the
//!   schemas (`schemas/rules/<type>.toml`), each with a severity (`reject` or `flag`).
//! * [`aggregate`]: the figures, pure: per day (UTC) × partner × event type, the events
//!   seen, per expected field how often it was filled, the completeness sum, failed flag
//!   rules, and rejections by kind. [`aggregate::Report`] merges them over a period.
//! * [`chain`]: handover readiness per case: expectations (`schemas/chain/<kind>.toml`),
//!   the case state a follower of the journal derives, the evaluation at each trigger and
//!   its figures per day × handover kind × partner × item.
//! * [`dimensions`]: quality dimensions beside completeness: timeliness (delay from an
//!   event's `time` to its receipt), validity, uniqueness and readiness per partner × type.
//! * [`store`]: the figures kept durably in their own sled database, updated as events are
//!   accepted, and rebuilt from the journal on demand.

pub mod aggregate;
mod cel_json;
pub mod chain;
mod declared;
pub mod dimensions;
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
    /// Handover expectation files that cannot be used; every problem names its file and item.
    #[error("invalid handover expectations:\n  {}", .0.join("\n  "))]
    Handovers(Vec<String>),
    #[error("quality store failure: {0}")]
    Storage(#[from] sled::Error),
    #[error("quality store record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("journal failure during rebuild: {0}")]
    Journal(#[from] loket_journal::Error),
}
