//! The background upkeep that keeps the stores bounded: pruning the journal's id index to
//! `[journal] dedup_window`. It runs off the publish path (a blocking task, never the
//! writer thread), so publishes are not held up by it.

use std::time::Duration;

use loket_journal::Journal;
use tokio_util::sync::CancellationToken;

use crate::http::metrics as m;

/// How often to prune: a tenth of the window, between a second and ten minutes, so the
/// index holds at most ~1.1 windows of ids.
fn prune_interval(window: Duration) -> Duration {
    (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Runs until `stopping`.
pub(crate) async fn run(journal: Journal, dedup_window: Duration, stopping: CancellationToken) {
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
