//! Handover readiness at the gateway: a task follows the journal, keeps the case state and
//! the readiness figures (`loket_quality::chain::ChainStore`) and journals one
//! `handover-readiness` event per handover (source "loket", subject the case), delivered
//! by the policy like any type.
//!
//! Each step (up to `loket_quality::chain::store::STEP` journal events) is evaluated
//! first, its readiness events are journalled (ids derived from the trigger, contents from
//! the journal alone), and only then is the step's state committed with its position. A
//! crash in between evaluates the step again
//! and journals the same events, which the journal answers as duplicates: none is lost,
//! none appears twice. Triggers the state had already passed before a rebuild are not
//! emitted again (`emitted`), so new expectations never contradict an event sent earlier.

use std::sync::Arc;
use std::time::Duration;

use loket_domain::time::rfc3339;
use loket_domain::{GATEWAY_SOURCE, HANDOVER_TYPE, JSON_CONTENT_TYPE};
use loket_journal::{Journal, NewEvent};
use loket_quality::chain::{ChainStore, HandoverOutcome, HandoverSet};
use loket_schema::Registry;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How long a report waits for the follower to reach what the journal held when it was
/// asked; after that it answers with what is there (and logs why).
const CATCH_UP: Duration = Duration::from_secs(10);

/// Once caught up, how long the follower lets new events gather before the next step.
/// Each step costs one sled batch, and sled 0.34 writes out and syncs its log buffer
/// twice per batch: following every group commit at a few events each cost more than
/// evaluating them (BENCHMARKS.md, issue 16). The figures and readiness events lag the
/// journal by this much more; reports wait for it (`caught_up`).
const GATHER: Duration = Duration::from_millis(50);

/// The handover side of the quality figures; cheap to clone.
#[derive(Clone)]
pub(crate) struct Chain {
    pub store: Arc<ChainStore>,
    pub handovers: Arc<HandoverSet>,
    /// The journal sequence the store covers, for readers that wait for it.
    covered: Arc<watch::Sender<u64>>,
}

impl Chain {
    pub fn new(store: ChainStore, handovers: Arc<HandoverSet>) -> Result<Chain, Error> {
        let followed = store.followed()?;
        Ok(Chain { store: Arc::new(store), handovers, covered: Arc::new(watch::channel(followed).0) })
    }

    /// Waits (a bounded while) until the state covers the journal up to `sequence`, so a
    /// report right after a publish includes the handover it triggered.
    pub async fn caught_up(&self, sequence: u64) {
        let mut rx = self.covered.subscribe();
        if tokio::time::timeout(CATCH_UP, rx.wait_for(|v| *v >= sequence)).await.is_err() {
            tracing::warn!(
                sequence,
                covered = *rx.borrow(),
                "handover figures lag the journal; reporting what is there"
            );
        }
    }

    /// Follows the journal until `stop`.
    pub async fn run(self, journal: Journal, registry: Arc<Registry>, stop: CancellationToken) {
        let mut durable = journal.watch();
        metrics::gauge!(crate::http::metrics::FOLLOWER_SEQUENCE, "follower" => "handover")
            .set(*self.covered.borrow() as f64);
        loop {
            durable.borrow_and_update();
            match self.step(&journal, &registry).await {
                // Behind: on to the next step, unless the gateway stops (what is not
                // followed yet is followed after the restart).
                Ok(true) if stop.is_cancelled() => return,
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "handover follower failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One step; false when the journal has nothing new.
    async fn step(&self, journal: &Journal, registry: &Registry) -> Result<bool, Error> {
        // Reading, evaluating and writing a step takes milliseconds of CPU: on a blocking
        // thread, so that publishes queued on the async workers are not held behind it.
        let (store, handovers, reader) = (self.store.clone(), self.handovers.clone(), journal.clone());
        let prepared = tokio::task::spawn_blocking(move || store.prepare_next(&reader, &handovers))
            .await
            .map_err(|e| Error::TaskFailed(e.to_string()))??;
        let Some(step) = prepared else { return Ok(false) };
        let emitted = self.store.emitted()?;
        let mut pending = Vec::new();
        for (case, outcome) in step.outcomes.iter().filter(|(_, o)| o.trigger_sequence > emitted) {
            pending.push(journal.submit(readiness_event(registry, &self.handovers, case, outcome)?));
        }
        for submitted in pending {
            submitted.await?;
        }
        let up_to = step.up_to;
        // False: retention or an erasure removed state since `prepare`; the next round
        // prepares the step again.
        let store = self.store.clone();
        let committed = tokio::task::spawn_blocking(move || store.commit(step))
            .await
            .map_err(|e| Error::TaskFailed(e.to_string()))??;
        if committed {
            self.covered.send_replace(up_to);
            metrics::gauge!(crate::http::metrics::FOLLOWER_SEQUENCE, "follower" => "handover").set(up_to as f64);
        }
        Ok(true)
    }
}

/// The `handover-readiness` event of one handover: a function of the journal only, so that
/// evaluating the same trigger again makes the same event (a duplicate to the journal).
fn readiness_event(
    registry: &Registry,
    handovers: &HandoverSet,
    case: &str,
    outcome: &HandoverOutcome,
) -> Result<NewEvent, Error> {
    let schema = registry.resolve(HANDOVER_TYPE, None)?;
    let describe = |item: &str| {
        handovers
            .handovers()
            .iter()
            .filter(|h| h.kind == outcome.kind)
            .flat_map(|h| &h.items)
            .find(|i| i.name == item)
            .map(|i| i.description.clone())
            .unwrap_or_default()
    };
    let gaps: Vec<_> = outcome
        .gaps()
        .map(|g| {
            json!({"item": g.item, "partner": g.partner, "type": g.event_type, "problem": g.status.as_str(),
                   "description": describe(&g.item)})
        })
        .collect();
    let data = json!({
        "vNumber": case,
        "handover": outcome.kind,
        "receiver": outcome.receiver,
        "ready": outcome.ready(),
        "trigger": {"type": outcome.trigger_type, "source": outcome.trigger_source,
                    "sequence": outcome.trigger_sequence, "receivedAt": rfc3339(outcome.at_micros).unwrap_or_default()},
        "due": outcome.items.len(),
        "gaps": gaps,
    });
    // Our own events go through the schema too: one that does not match is a bug to hear
    // about, not an event to store.
    let completeness = schema.check(&data).map_err(|v| {
        Error::Quality(loket_quality::Error::Handovers(vec![format!("readiness event fails its schema: {v:?}")]))
    })?;
    Ok(NewEvent {
        source: GATEWAY_SOURCE.to_owned(),
        id: format!("handover-{}-{}", outcome.trigger_sequence, outcome.kind),
        event_type: HANDOVER_TYPE.to_owned(),
        schema_version: schema.version(),
        dataschema: schema.id().to_owned(),
        subject: case.to_owned(),
        time_micros: Some(outcome.at_micros),
        datacontenttype: JSON_CONTENT_TYPE.to_owned(),
        data: serde_json::to_vec(&data).map_err(|e| {
            Error::Quality(loket_quality::Error::Corrupt { key: "readiness event".into(), reason: e.to_string() })
        })?,
        completeness: completeness.score,
        missing_expected: completeness.missing,
        ..NewEvent::default()
    })
}
