//! The gateway's side of quality measurement: counting accepted, duplicate and refused
//! publishes into the quality store (here), handover readiness (`chain.rs`: the follower of
//! the journal and its `handover-readiness` events), the quality report (`report.rs`), the
//! daily digests (`digest.rs`) and the dashboard pages (`dashboard/`).

mod chain;
pub(crate) mod dashboard;
mod digest;
mod report;

use std::sync::Arc;

use loket_domain::PartnerId;
use loket_journal::Appended;
use loket_quality::aggregate::{day_of, BucketKey};
use loket_quality::{Accepted, QualityStore};

pub(crate) use chain::Chain;
pub(crate) use digest::{is_digest, run as run_digests};

use crate::publish::Admitted;
use crate::Error;

#[derive(Clone)]
pub(crate) struct Quality {
    pub store: Arc<QualityStore>,
    pub chain: Chain,
}

impl Quality {
    /// Counts an event the journal acknowledged; a duplicate was counted the first time,
    /// and counts now only as a duplicate (uniqueness).
    pub fn accepted(&self, admitted: &AdmittedFacts, appended: &Appended) {
        if appended.duplicate {
            let key = BucketKey {
                day: day_of(loket_domain::time::now_micros()),
                partner: admitted.partner.clone(),
                event_type: admitted.event_type.clone(),
            };
            if let Err(e) = self.store.record_duplicate(&key) {
                tracing::error!(error = %e, "cannot count a duplicate publish in the quality figures");
            }
            return;
        }
        let event = Accepted {
            received_at_micros: appended.received_at_micros,
            partner: &admitted.partner,
            event_type: &admitted.event_type,
            expected: &admitted.expected,
            missing: &appended.missing_expected,
            completeness: appended.completeness,
            flagged: &admitted.flagged,
            time_micros: admitted.time_micros,
        };
        // The event is stored and acknowledged either way; a store failure only leaves the
        // figures behind, which the next start-up notices (no clean mark) and rebuilds.
        if let Err(e) = self.store.record_accepted(&event) {
            tracing::error!(error = %e, "cannot count an accepted event in the quality figures");
        }
    }

    /// Counts a refused publish of a known event type, by the refusal's reason.
    pub fn rejected(&self, partner: &PartnerId, event_type: &str, refusal: &Error, now_micros: i64) {
        let key =
            BucketKey { day: day_of(now_micros), partner: partner.to_string(), event_type: event_type.to_owned() };
        if let Err(e) = self.store.record_rejected(&key, refusal.reason(), &refusal.failed_rules()) {
            tracing::error!(error = %e, "cannot count a refused publish in the quality figures");
        }
    }
}

/// What the quality figures need of an admitted event once the journal has it.
pub(crate) struct AdmittedFacts {
    pub partner: String,
    pub event_type: String,
    pub expected: Vec<String>,
    pub flagged: Vec<String>,
    /// The event's own `time`, for timeliness.
    pub time_micros: Option<i64>,
}

impl AdmittedFacts {
    pub fn of(admitted: &Admitted) -> Self {
        AdmittedFacts {
            partner: admitted.event.source.clone(),
            event_type: admitted.event.event_type.clone(),
            expected: admitted.expected.clone(),
            flagged: admitted.flagged.clone(),
            time_micros: admitted.event.time_micros,
        }
    }
}
