//! The gateway's side of quality measurement: counting accepted, duplicate and refused
//! publishes into the quality store (here), handover readiness (`chain.rs`: the follower of
//! the journal and its `handover-readiness` events), the quality report (`report.rs`), the
//! daily digests (`digest.rs`) and the dashboard pages (`dashboard/`).

mod chain;
pub(crate) mod dashboard;
mod digest;
mod report;

use std::sync::Arc;
use std::time::Duration;

use loket_domain::PartnerId;
use loket_journal::{Appended, Journal};
use loket_quality::aggregate::{day_of, BucketKey};
use loket_quality::{Accepted, QualityStore, RuleSet};
use loket_schema::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use chain::Chain;
pub(crate) use digest::{is_digest, run as run_digests};

use crate::publish::Admitted;
use crate::Error;

/// How long a report waits for a recount before it reports what is there.
const RECOUNT_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(crate) struct Quality {
    pub store: Arc<QualityStore>,
    pub chain: Chain,
    /// Whether the figures count every journalled event: not while they are recounted in
    /// the background after an unclean stop ([`Quality::recount`]).
    complete: Arc<watch::Sender<bool>>,
}

impl Quality {
    pub fn new(store: Arc<QualityStore>, chain: Chain) -> Self {
        let complete = Arc::new(watch::channel(!store.is_rebuilding()).0);
        Quality { store, chain, complete }
    }

    /// Waits (a bounded while) until the figures count every journalled event, so a
    /// report after a restart is not one of half the history.
    pub async fn complete(&self) {
        let mut rx = self.complete.subscribe();
        if tokio::time::timeout(RECOUNT_WAIT, rx.wait_for(|complete| *complete)).await.is_err() {
            tracing::warn!("quality figures are still being recounted after an unclean stop; reporting what is there");
        }
    }

    /// Recounts the figures of the journal's events up to `last`, which an unclean stop
    /// left uncounted, on a blocking thread: the gateway serves meanwhile (a restart after
    /// kill -9 must not wait for a pass over the whole journal), and counts what it
    /// accepts beside the recount.
    pub async fn recount(
        self,
        journal: Journal,
        registry: Arc<Registry>,
        rules: Arc<RuleSet>,
        last: u64,
        stop: CancellationToken,
    ) {
        let store = self.store.clone();
        let stopped = stop.clone();
        let counted = tokio::task::spawn_blocking(move || {
            store.count_until(&journal, &registry, &rules, last, &|| stopped.is_cancelled())
        })
        .await;
        match counted {
            Ok(Ok(read)) if !self.store.is_rebuilding() => {
                tracing::info!(
                    events = read,
                    "quality figures rebuilt from the journal (not closed cleanly last time)"
                );
                self.complete.send_replace(true);
            }
            Ok(Ok(read)) => {
                tracing::info!(events = read, "quality recount stopped by the shutdown; the next start recounts")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "quality figures could not be recounted; `loket quality rebuild` recounts them offline")
            }
            Err(e) => tracing::error!(error = %e, "the quality recount failed"),
        }
    }

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
