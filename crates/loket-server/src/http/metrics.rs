//! Prometheus metrics through the `metrics` facade: any module records with
//! `metrics::counter!`/`gauge!`/`histogram!` and the series shows up on `/metrics`
//! (for instance a relay's `metrics::gauge!("loket_relay_backlog").set(n)`).
//!
//! The recorder is process-wide (the facade has one global recorder), installed by the
//! first gateway that serves metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const PUBLISH_TOTAL: &str = "loket_publish_total";
pub const PUBLISH_DURATION: &str = "loket_publish_duration_seconds";
pub const JOURNAL_SIZE: &str = "loket_journal_size_bytes";
pub const JOURNAL_LAST_SEQUENCE: &str = "loket_journal_last_sequence";
pub const FOLLOWER_SEQUENCE: &str = "loket_follower_sequence";
pub const DISK_FREE: &str = "loket_disk_free_bytes";
pub const DISK_LOW: &str = "loket_disk_low";
pub const STORE_SIZE: &str = "loket_store_size_bytes";
pub const IDS_PRUNED: &str = "loket_journal_ids_pruned_total";
pub const RETENTION_REMOVED: &str = "loket_retention_removed_total";
pub const RETENTION_RUNS: &str = "loket_retention_runs_total";
pub const FIRST_RETAINED: &str = "loket_journal_first_retained_sequence";
pub const SUBSCRIBER_LAG: &str = "loket_subscriber_lag_events";
pub const RELAY_BACKLOG: &str = "loket_relay_backlog_events";
pub const RELAY_OLDEST_AGE: &str = "loket_relay_oldest_age_seconds";
pub const FILL_RATE: &str = "loket_quality_fill_rate";
pub const MEAN_COMPLETENESS: &str = "loket_quality_mean_completeness";
pub const QUALITY_EVENTS: &str = "loket_quality_events";
pub const QUALITY_REJECTED: &str = "loket_quality_rejected";
pub const RULE_FAILURES: &str = "loket_quality_rule_failures";
pub const VALIDITY: &str = "loket_quality_validity";
pub const TIMELINESS: &str = "loket_quality_timeliness_seconds";
pub const DUPLICATES: &str = "loket_quality_duplicates";
pub const UNIQUENESS: &str = "loket_quality_uniqueness";
pub const READINESS: &str = "loket_quality_readiness";
pub const HANDOVERS: &str = "loket_handovers";
pub const HANDOVERS_READY: &str = "loket_handovers_ready";
pub const HANDOVER_ITEMS: &str = "loket_handover_items";
pub const QUOTA_REFUSED: &str = "loket_quota_refused_total";
pub const PUBLISH_SHED: &str = "loket_publish_shed_total";
pub const PUBLISH_WAIT: &str = "loket_publish_wait_seconds";
pub const ADMISSION_LIMIT: &str = "loket_publish_admission_limit";
pub const ADMISSION_REFUSED: &str = "loket_publish_admission_refused_total";
pub const ADMISSION_IN_FLIGHT: &str = "loket_publish_admitted_in_flight";
pub const CONNECTIONS_OPEN: &str = "loket_connections_open";
pub const CONNECTIONS_REFUSED: &str = "loket_connections_refused_total";
pub const HANDSHAKE_TIMEOUTS: &str = "loket_tls_handshake_timeouts_total";
pub const SUBSCRIPTIONS_OPEN: &str = "loket_subscriptions_open";
pub const SLOW_SUBSCRIBERS: &str = "loket_slow_subscribers_total";
pub const SUBSCRIPTIONS_EXPIRED: &str = "loket_subscriptions_expired_total";

/// Seconds; up to 10 s, as overload makes a publish wait that long.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process' Prometheus recorder, installed on first use.
pub(crate) fn handle() -> Result<&'static PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(PUBLISH_DURATION.to_owned()), LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .set_buckets_for_metric(Matcher::Full(PUBLISH_WAIT.to_owned()), LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        PUBLISH_TOTAL,
        "Publish requests by partner, event type and outcome (accepted, duplicate, rejected)."
    );
    describe_histogram!(PUBLISH_DURATION, Unit::Seconds, "Time from receiving a publish to its reply, by outcome.");
    describe_counter!(QUOTA_REFUSED, "Calls refused over a partner quota, by partner and quota.");
    describe_counter!(
        PUBLISH_SHED,
        "Publishes refused by load shedding (journal queue past its high-water mark, gateway admission rate or publishes in flight), by partner."
    );
    describe_histogram!(
        PUBLISH_WAIT,
        Unit::Seconds,
        "Time an admitted unary publish waited between its arrival and its handler (body, authentication)."
    );
    describe_counter!(
        ADMISSION_REFUSED,
        "Unary publishes refused as they arrived (before authentication), by reason: limit (every place in flight taken) or share (the caller holds its fair share while others want theirs)."
    );
    describe_gauge!(ADMISSION_LIMIT, "Unary publishes the gateway admits in flight now (adapted to their latency).");
    describe_gauge!(ADMISSION_IN_FLIGHT, "Unary publishes admitted and not yet answered.");
    describe_gauge!(CONNECTIONS_OPEN, "Open gRPC connections (handshaking or established).");
    describe_counter!(CONNECTIONS_REFUSED, "Connections closed at accept over a connection limit, by limit.");
    describe_counter!(HANDSHAKE_TIMEOUTS, "Connections closed because their TLS handshake took too long.");
    describe_gauge!(SUBSCRIPTIONS_OPEN, "Open subscriber streams per partner.");
    describe_counter!(SLOW_SUBSCRIBERS, "Subscriber streams ended because the subscriber stopped reading.");
    describe_counter!(SUBSCRIPTIONS_EXPIRED, "Named subscriptions deleted after going unused.");
    describe_gauge!(JOURNAL_SIZE, Unit::Bytes, "Bytes the journal takes on disk.");
    describe_gauge!(JOURNAL_LAST_SEQUENCE, "The journal's last durable sequence.");
    describe_gauge!(
        FOLLOWER_SEQUENCE,
        "The last journal sequence each follower of the journal has processed (access-index: consent gating of deliveries; handover: the readiness figures); its distance to loket_journal_last_sequence is the follower's lag."
    );
    describe_gauge!(DISK_FREE, Unit::Bytes, "Free bytes on the data directory's filesystem at the last check.");
    describe_gauge!(DISK_LOW, "1 while publishes are refused for lack of disk space ([journal] min_free_bytes).");
    describe_counter!(IDS_PRUNED, "Id index entries removed because their event left the dedup window.");
    describe_counter!(
        RETENTION_REMOVED,
        "Entries removed by retention compaction, by store (journal, rejections, payloads purged in place, access_index, denials, handover_events, handovers, handover_cases, processing, quality_days)."
    );
    describe_counter!(RETENTION_RUNS, "Retention compaction passes completed.");
    describe_gauge!(FIRST_RETAINED, "The first sequence still in the journal after retention.");
    describe_gauge!(
        STORE_SIZE,
        Unit::Bytes,
        "Bytes each store (journal, access, quality) takes under the data directory."
    );
    describe_gauge!(RELAY_BACKLOG, "Events stored in the journal but not yet confirmed by Kafka (with [kafka]).");
    describe_gauge!(RELAY_OLDEST_AGE, Unit::Seconds, "Age of the oldest event not yet on Kafka; 0 without a backlog.");
    describe_gauge!(FILL_RATE, "Share of accepted events with the expected field filled, all time.");
    describe_gauge!(MEAN_COMPLETENESS, "Mean completeness of accepted events, all time.");
    describe_gauge!(QUALITY_EVENTS, "Accepted events counted in the quality figures, all time.");
    describe_gauge!(QUALITY_REJECTED, "Refused publishes by violation kind, all time.");
    describe_gauge!(RULE_FAILURES, "Quality rule failures (flagged or refused), all time.");
    describe_counter!(
        loket_kafka::subscriber::REFUSED_METRIC,
        "Kafka records a Kafka-mode subscription refused (no or a wrong gateway tag), by reason."
    );
    describe_counter!(
        loket_kafka::subscriber::DUPLICATES_METRIC,
        "Kafka records dropped as the same event delivered within the dedup window (re-published through another gateway)."
    );
    describe_gauge!(VALIDITY, "Accepted over published (accepted + refused) per partner and type, all time.");
    describe_gauge!(
        TIMELINESS,
        Unit::Seconds,
        "Delay from an event's own time to its receipt per partner and type, by quantile (0.5, 0.9), all time."
    );
    describe_gauge!(DUPLICATES, "Publishes answered as duplicates per partner and type, all time.");
    describe_gauge!(UNIQUENESS, "Accepted over accepted + duplicate publishes per partner and type, all time.");
    describe_gauge!(READINESS, "Handover items met over due, per responsible partner and type, all time.");
    describe_gauge!(HANDOVERS, "Handovers evaluated per handover kind, all time.");
    describe_gauge!(HANDOVERS_READY, "Handovers with every due item met per handover kind, all time.");
    describe_gauge!(
        HANDOVER_ITEMS,
        "Handover items per kind, item, responsible partner and status (due, met, missing, stale, unmet), all time."
    );
}

/// Sets the dimension and handover gauges from the all-time figures.
pub(crate) fn record_dimensions(report: &loket_quality::Report, handovers: &loket_quality::chain::HandoverReport) {
    for d in &report.dimensions {
        let labels = [("partner", d.partner.clone()), ("type", d.event_type.clone())];
        if d.published > 0 {
            metrics::gauge!(VALIDITY, &labels).set(d.validity);
        }
        metrics::gauge!(DUPLICATES, &labels).set(d.duplicates as f64);
        if d.accepted + d.duplicates > 0 {
            metrics::gauge!(UNIQUENESS, &labels).set(d.uniqueness);
        }
        if let Some(r) = d.readiness {
            metrics::gauge!(READINESS, &labels).set(r);
        }
        for (quantile, value) in [("0.5", d.timeliness_p50_seconds), ("0.9", d.timeliness_p90_seconds)] {
            if let Some(v) = value {
                let labels =
                    [("partner", d.partner.clone()), ("type", d.event_type.clone()), ("quantile", quantile.to_owned())];
                metrics::gauge!(TIMELINESS, &labels).set(v);
            }
        }
    }
    for k in &handovers.kinds {
        metrics::gauge!(HANDOVERS, "handover" => k.kind.clone()).set(k.handovers as f64);
        metrics::gauge!(HANDOVERS_READY, "handover" => k.kind.clone()).set(k.ready as f64);
    }
    for i in &handovers.items {
        for (status, n) in
            [("due", i.due), ("met", i.met), ("missing", i.missing), ("stale", i.stale), ("unmet", i.unmet)]
        {
            let labels = [
                ("handover", i.kind.clone()),
                ("item", i.item.clone()),
                ("partner", i.partner.clone()),
                ("status", status.to_owned()),
            ];
            metrics::gauge!(HANDOVER_ITEMS, &labels).set(n as f64);
        }
    }
}
