//! The message log as a file: the NDJSON line format that `loket export` writes and `loket
//! replay` and `loket audit verify --log` read ([`LogLine`]), the deterministic synthetic
//! log of the whole chain that `loket gen`, `loket demo` and `loket bench` use
//! ([`generate`]), and the RFC 3339 form of timestamps that both write ([`timestamp`]).

mod error;
mod gen;
mod line;
pub mod timestamp;

pub use error::Error;
pub use gen::{generate, Gaps, GenOptions, Generated, Planted, PlantedKind};
pub use line::{encode_data, LogLine, ViolationJson, ACCEPTED, REJECTED};
