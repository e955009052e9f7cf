//! Publisher feedback: every `quality.digest_interval_secs` the gateway journals one
//! `quality-digest` event per partner that published that UTC day, with that day's figures
//! so far. Source "loket", subject the partner's id; the view (`crate::view`) delivers a
//! digest only to its partner and to the quality readers. Digests are never counted in the figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loket_domain::time::{now_micros, rfc3339};
use loket_domain::{DIGEST_TYPE, GATEWAY_SOURCE, JSON_CONTENT_TYPE};
use loket_journal::{Journal, NewEvent, StoredEvent};
use loket_quality::aggregate::{day_label, day_of};
use loket_quality::{Filter, QualityStore};
use loket_schema::Registry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub(crate) fn is_digest(event: &StoredEvent) -> bool {
    event.source == GATEWAY_SOURCE && event.event_type == DIGEST_TYPE
}

pub(crate) async fn run(
    every: Duration,
    journal: Journal,
    registry: Arc<Registry>,
    store: Arc<QualityStore>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        // Figures being recounted after an unclean stop would give a day's digest of part
        // of its events: the next tick makes it.
        if store.is_rebuilding() {
            continue;
        }
        let events = match digests(&registry, &store, now_micros()) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(error = %e, "cannot make the quality digests");
                continue;
            }
        };
        for event in events {
            let partner = event.subject.clone();
            match journal.submit(event).await {
                Ok(appended) => tracing::debug!(%partner, sequence = appended.sequence, "quality digest journalled"),
                Err(e) => tracing::error!(%partner, error = %e, "cannot journal a quality digest"),
            }
        }
    }
}

/// The digest events of the UTC day of `now` for every partner with figures that day.
fn digests(registry: &Registry, store: &QualityStore, now: i64) -> Result<Vec<NewEvent>, String> {
    let schema = registry.resolve(DIGEST_TYPE, None).map_err(|e| e.to_string())?;
    let day = day_of(now);
    let report = store
        .report(&Filter { from_day: Some(day), to_day: Some(day), ..Filter::default() })
        .map_err(|e| e.to_string())?;
    let mut per_partner: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for t in &report.types {
        let fields: Vec<Value> = report
            .fields
            .iter()
            .filter(|f| f.partner == t.partner && f.event_type == t.event_type)
            .map(|f| json!({"field": f.field, "seen": f.seen, "filled": f.filled, "fillRate": f.fill_rate}))
            .collect();
        per_partner.entry(&t.partner).or_default().push(json!({
            "type": t.event_type,
            "events": t.events,
            "meanCompleteness": t.mean_completeness,
            "rejected": t.rejected,
            "rulesFailed": t.rules_failed,
            "fields": fields,
        }));
    }
    let generated_at = rfc3339(now).unwrap_or_default();
    let mut events = Vec::new();
    for (partner, types) in per_partner {
        let data = json!({"partner": partner, "day": day_label(day), "generatedAt": generated_at, "types": types});
        // Our own events go through the schema too: a digest that does not match is a bug
        // to hear about, not an event to store.
        let completeness = schema.check(&data).map_err(|v| format!("digest for {partner} fails its schema: {v:?}"))?;
        events.push(NewEvent {
            source: GATEWAY_SOURCE.to_owned(),
            id: format!("digest-{partner}-{}-{now}", day_label(day)),
            event_type: DIGEST_TYPE.to_owned(),
            schema_version: schema.version(),
            dataschema: schema.id().to_owned(),
            subject: partner.to_owned(),
            time_micros: Some(now),
            datacontenttype: JSON_CONTENT_TYPE.to_owned(),
            data: serde_json::to_vec(&data).map_err(|e| e.to_string())?,
            completeness: completeness.score,
            missing_expected: completeness.missing,
            ..NewEvent::default()
        });
    }
    Ok(events)
}
