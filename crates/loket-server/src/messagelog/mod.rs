//! The message log as partners and auditors see it: refused publishes journalled with their
//! reasons (`rejections.rs`), and the export of accepted and rejected entries
//! (`export.rs`).

mod export;
mod rejections;

pub(crate) use export::{export, list_exports};
pub use export::{export_entry, filter, OfflineExport, OFFLINE_EXPORTER};
pub(crate) use rejections::record_rejection;
