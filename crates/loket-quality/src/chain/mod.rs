//! Chain-wide quality per case: was everything the next partner needed there at the
//! handover?
//!
//! * [`config`]: handover expectations, CEL over the case's events, one TOML file per
//!   handover kind in `schemas/chain/` (built in, or a directory).
//! * [`case`]: a case's state as a follower of the journal derives it: the latest event of
//!   each type per partner (only the payload members the expectations read); and its
//!   history, the timeline and the handovers so far.
//! * [`evaluate`]: readiness at a trigger: every due item met, missing, stale or unmet,
//!   attributed to the partner that should have supplied it.
//! * [`figures`]: the counts per day × handover kind × partner × item, and the report.
//! * [`store`]: all of it on disk, one sled batch per step through the journal.
//! * `cache`: the case states held in memory between steps, in front of the store.
//! * `codec`: the values written per step, in a compact binary form.
//! * [`expire`]: what goes with a case's events under retention and erasure.

mod cache;
pub mod case;
mod codec;
pub mod config;
pub mod evaluate;
pub mod expire;
pub mod figures;
pub mod store;

pub use case::{CaseHistory, CaseState, Observed, TimelineEntry};
pub use config::HandoverSet;
pub use evaluate::{HandoverOutcome, ItemOutcome, ItemStatus};
pub use expire::Removed;
pub use figures::{HandoverReport, ItemFigure, KindDayFigure, KindFigure};
pub use store::{ChainStore, HandoverLine};

#[cfg(test)]
mod tests;
