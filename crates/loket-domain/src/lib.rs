//! The vocabulary every other loket crate speaks. Pure logic, no I/O: identifiers with
//! their validation rules, field violations, completeness scoring and subscription start
//! positions, the envelope's shared names and the time helpers.

mod completeness;
mod envelope;
mod error;
mod ids;
mod position;
pub mod profile;
pub mod time;
pub mod trace;
mod violation;

pub use completeness::{is_filled, Completeness};
pub use envelope::{
    Envelope, DIGEST_TYPE, ERASURE_TYPE, GATEWAY_SOURCE, GATEWAY_TYPES, HANDOVER_TYPE, JSON_CONTENT_TYPE, SPEC_VERSION,
};
pub use error::Error;
pub use ids::{CaseId, PartnerId};
pub use position::StartPosition;
pub use profile::Profile;
pub use trace::TraceParent;
pub use violation::FieldViolation;
