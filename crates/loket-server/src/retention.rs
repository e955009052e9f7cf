//! The background upkeep that keeps the stores bounded, off the publish path (blocking
//! tasks, never the journal's writer thread):
//! - pruning the journal's id index to `[journal] dedup_window`;
//! - compaction under `[retention]`: the journal drops expired entries
//!   (`Journal::expire`), then the access store drops its copies of them and the denial
//!   log its expired records. Progress goes to the log and `/metrics`.

use std::collections::HashSet;
use std::time::Duration;

use loket_domain::time::now_micros;
use loket_journal::{Journal, RetentionPolicy};
use tokio_util::sync::CancellationToken;

use crate::access::AccessStore;
use crate::config::RetentionConfig;
use crate::http::metrics as m;
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
    pub config: RetentionConfig,
}

impl Compaction {
    /// Compacts every `compact_every` until `stopping` (not at all without `[retention]`).
    pub async fn run(self, stopping: CancellationToken) {
        if !self.config.any() {
            return;
        }
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
        let outcome = self.journal.expire(policy, now)?;
        // Every purged payload, not only this pass's: an earlier pass may have been
        // interrupted before the access store caught up.
        let purged: HashSet<u64> = self.journal.purges()?.into_iter().flat_map(|p| p.stripped).collect();
        let denials_before = self.config.denials.map(|p| now.saturating_sub(p.0.as_micros() as i64));
        let (index_removed, denials_removed) =
            self.access.expire(self.journal.first_retained(), &purged, denials_before)?;
        metrics::counter!(m::RETENTION_REMOVED, "store" => "journal").increment(outcome.events_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "rejections").increment(outcome.rejections_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "payloads").increment(outcome.stripped);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "access_index").increment(index_removed);
        metrics::counter!(m::RETENTION_REMOVED, "store" => "denials").increment(denials_removed);
        metrics::gauge!(m::FIRST_RETAINED).set(self.journal.first_retained() as f64);
        metrics::counter!(m::RETENTION_RUNS).increment(1);
        if let Some(record) = &outcome.record {
            tracing::info!(
                purge = record.number,
                events_removed = outcome.events_removed,
                payloads_purged = outcome.stripped,
                rejections_removed = outcome.rejections_removed,
                index_removed,
                denials_removed,
                first_retained = self.journal.first_retained(),
                "retention: expired entries removed"
            );
        } else if index_removed + denials_removed > 0 {
            tracing::info!(index_removed, denials_removed, "retention: expired access records removed");
        }
        Ok(())
    }
}
