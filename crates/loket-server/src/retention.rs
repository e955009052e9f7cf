//! The background upkeep that keeps the stores bounded, off the publish path (blocking
//! tasks, never the journal's writer thread):
//! - pruning the journal's id index to `[journal] dedup_window`;
//! - compaction under `[retention]`: the journal drops expired entries
//!   (`Journal::expire`), then the stores derived from it follow: the access store drops
//!   its copies of them, the handover state what their cases kept of them (timeline,
//!   handovers, state slots; a case left without events entirely); and by age alone the
//!   denial log, the processing log and the quality figures' days. Progress goes to the
//!   log and `/metrics`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use loket_domain::time::now_micros;
use loket_journal::{Journal, RetentionPolicy};
use loket_quality::aggregate::day_of;
use loket_quality::chain::ChainStore;
use loket_quality::QualityStore;
use tokio_util::sync::CancellationToken;

use crate::access::AccessStore;
use crate::config::RetentionConfig;
use crate::http::metrics as m;
use crate::processing::ProcessingLog;
use crate::Error;

/// How often to prune: a tenth of the window, between a second and ten minutes, so the
/// index holds at most ~1.1 windows of ids.
fn prune_interval(window: Duration) -> Duration {
    (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Prunes the id index until `stopping`.
pub(crate) async fn run_pruning(journal: Journal, dedup_window: Duration, stopping: CancellationToken) {
    let mut tick = tokio::time::interval(prune_interval(dedup_window));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        let journal = journal.clone();
        let pruned = tokio::task::spawn_blocking(move || journal.prune_ids()).await;
        match pruned {
            Ok(Ok(removed)) => metrics::counter!(m::IDS_PRUNED).increment(removed),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning the id index failed; retrying later"),
            Err(e) => tracing::error!(error = %e, "the id index pruning task failed"),
        }
    }
}

/// What compaction needs.
#[derive(Clone)]
pub(crate) struct Compaction {
    pub journal: Journal,
    pub access: AccessStore,
    pub processing: ProcessingLog,
    pub quality: Arc<QualityStore>,
    pub chain: Arc<ChainStore>,
    pub config: RetentionConfig,
}

fn before(now: i64, period: Duration) -> i64 {
    now.saturating_sub(i64::try_from(period.as_micros()).unwrap_or(i64::MAX))
}

impl Compaction {
    /// Compacts every `compact_every` until `stopping` (the quality figures have a period
    /// even without `[retention]`).
    pub async fn run(self, stopping: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.compact_every.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let policy = self.config.policy();
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (this, policy) = (self.clone(), policy.clone());
            match tokio::task::spawn_blocking(move || this.once(&policy, now_micros())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "retention compaction failed; retrying at the next run"),
                Err(e) => tracing::error!(error = %e, "the retention compaction task failed"),
            }
        }
    }

    /// One pass as of `now` (Unix µs).
    pub fn once(&self, policy: &RetentionPolicy, now: i64) -> Result<(), Error> {
        // Without periods for entries (only the figures' default one) nothing can have
        // expired, and the access index is not scanned for nothing.
        let (outcome, index_removed, denials_removed, handover, processing_removed) = if self.config.any() {
            let outcome = self.journal.expire(policy, now)?;
            // Every purged payload, not only this pass's: an earlier pass may have been
            // interrupted before the access store caught up.
            let purged: HashSet<u64> = self.journal.purges()?.into_iter().flat_map(|p| p.stripped).collect();
            let denials_before = self.config.denials.map(|p| before(now, p.0));
            let first_retained = self.journal.first_retained();
            let (index, denials) = self.access.expire(first_retained, &purged, denials_before)?;
            let handover = self.chain.expire(first_retained, &purged)?;
            let processing = match self.config.processing {
                Some(p) => self.processing.expire(before(now, p.0))?,
                None => 0,
            };
            (outcome, index, denials, handover, processing)
        } else {
            Default::default()
        };
        let first_retained = self.journal.first_retained();
        // A day's figures go once the whole day is older than the period.
        let first_day = day_of(before(now, self.config.quality.0));
        let days_removed = self.quality.expire_days(first_day)? + self.chain.expire_days(first_day)?;
        metrics::counter!(m::RETENTION_REMOVED, "store" => "journal").increment(outcome.events_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "rejections").increment(outcome.rejections_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "payloads").increment(outcome.stripped);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "access_index").increment(index_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "denials").increment(denials_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "handover_events").increment(handover.events);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "handovers").increment(handover.handovers);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "handover_cases").increment(handover.cases);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "processing").increment(processing_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "quality_days").increment(days_removed);
        metrics::gauge!(m::FIRST_RETAINED).set(self.journal.first_retained() as f64);
        metrics::counter!(m::RETENTION_RUNS).increment(1);
        let derived = index_removed + denials_removed + handover.events + processing_removed + days_removed;
        if outcome.record.is_some() || derived > 0 {
            tracing::info!(
                purge = outcome.record.as_ref().map(|r| r.number),
                events_removed = outcome.events_removed,
                payloads_purged = outcome.stripped,
                rejections_removed = outcome.rejections_removed,
                index_removed,
                denials_removed,
                handover_events = handover.events,
                handovers = handover.handovers,
                handover_cases = handover.cases,
                processing_removed,
                quality_days = days_removed,
                first_retained,
                "retention: expired entries removed"
            );
        }
        Ok(())
    }
}
