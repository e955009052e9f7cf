//! The vocabulary every other loket crate speaks. Pure logic, no I/O: identifiers with
//! their validation rules, field violations, completeness scoring and subscription start
//! positions.

mod completeness;
mod error;
mod ids;
mod position;
mod violation;

pub use completeness::{is_filled, Completeness};
pub use error::Error;
pub use ids::{CaseId, PartnerId};
pub use position::StartPosition;
pub use violation::FieldViolation;
