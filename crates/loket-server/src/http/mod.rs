//! The HTTP listener next to gRPC: `/metrics` (Prometheus text format) and the dashboard
//! (`/quality`, `/quality/chain`, `/quality/scorecard`, `/quality/case/{pseudonym}`). Plain
//! HTTP without identities: it shows every partner's figures, so it belongs on a loopback
//! or management network, where the quality team reads it. Cases appear only by pseudonym.

pub(crate) mod lag;
pub(crate) mod metrics;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use loket_journal::Journal;
use loket_quality::chain::HandoverReport;
use loket_quality::{Filter, Report};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::metrics as m;
use crate::disk::DiskGuard;
use crate::quality::{dashboard, Quality};

#[derive(Clone)]
struct AppState {
    prometheus: &'static PrometheusHandle,
    journal: Journal,
    quality: Quality,
    /// The Kafka relay, with `[kafka]`.
    relay: Option<loket_kafka::RelayHandle>,
    disk: DiskGuard,
}

pub(crate) fn router(
    prometheus: &'static PrometheusHandle,
    journal: Journal,
    quality: Quality,
    relay: Option<loket_kafka::RelayHandle>,
    disk: DiskGuard,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/quality", get(quality_page))
        .route("/quality/chain", get(chain_page))
        .route("/quality/scorecard", get(scorecard_page))
        .route("/quality/case/{pseudonym}", get(case_page))
        .with_state(AppState { prometheus, journal, quality, relay, disk })
}

pub(crate) async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let served = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}; see the gateway log\n")).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Gauges of state owned elsewhere are read at scrape time.
    match state.journal.size_on_disk() {
        Ok(size) => ::metrics::gauge!(m::JOURNAL_SIZE).set(size as f64),
        Err(e) => return unavailable("cannot read the journal size", e),
    }
    if let Some(relay) = &state.relay {
        match relay.status() {
            Ok(status) => {
                ::metrics::gauge!(m::RELAY_BACKLOG).set(status.backlog as f64);
                ::metrics::gauge!(m::RELAY_OLDEST_AGE).set(status.oldest_age().as_secs_f64());
            }
            Err(e) => return unavailable("cannot read the kafka relay's backlog", e),
        }
    }
    ::metrics::gauge!(m::JOURNAL_LAST_SEQUENCE).set(state.journal.last_sequence() as f64);
    ::metrics::gauge!(m::DISK_FREE).set(state.disk.free() as f64);
    ::metrics::gauge!(m::DISK_LOW).set(if state.disk.check().is_err() { 1.0 } else { 0.0 });
    for store in ["journal", "access", "quality"] {
        let bytes = crate::disk::dir_bytes(&state.disk.dir().join(store));
        ::metrics::gauge!(m::STORE_SIZE, "store" => store).set(bytes as f64);
    }
    state.quality.chain.caught_up(state.journal.last_sequence()).await;
    // While the figures are recounted after an unclean stop, their gauges are left out
    // rather than holding the scrape for the recount.
    if !state.quality.store.is_rebuilding() {
        match state.quality.figures(&Filter::default()) {
            Ok((report, handovers)) => record_quality(&report, &handovers),
            Err(e) => return unavailable("cannot read the quality figures", e),
        }
    }
    state.prometheus.run_upkeep();
    let mut page = state.prometheus.render();
    lag::render(&mut page);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], page).into_response()
}

/// The quality figures as gauges.
fn record_quality(report: &Report, handovers: &HandoverReport) {
    m::record_dimensions(report, handovers);
    for f in &report.fields {
        let labels = [("partner", f.partner.clone()), ("type", f.event_type.clone()), ("field", f.field.clone())];
        ::metrics::gauge!(m::FILL_RATE, &labels).set(f.fill_rate);
    }
    for t in &report.types {
        let labels = [("partner", t.partner.clone()), ("type", t.event_type.clone())];
        ::metrics::gauge!(m::MEAN_COMPLETENESS, &labels).set(t.mean_completeness);
        ::metrics::gauge!(m::QUALITY_EVENTS, &labels).set(t.events as f64);
        for (kind, n) in &t.rejections {
            let labels = [("partner", t.partner.clone()), ("type", t.event_type.clone()), ("kind", kind.clone())];
            ::metrics::gauge!(m::QUALITY_REJECTED, &labels).set(*n as f64);
        }
        for (rule, n) in &t.rules_failed {
            let labels = [("partner", t.partner.clone()), ("type", t.event_type.clone()), ("rule", rule.clone())];
            ::metrics::gauge!(m::RULE_FAILURES, &labels).set(*n as f64);
        }
    }
}

async fn chain_page(State(state): State<AppState>) -> Response {
    state.quality.chain.caught_up(state.journal.last_sequence()).await;
    let figures = state.quality.chain.store.report(&Filter::default());
    match figures.and_then(|r| Ok((r, state.quality.chain.store.recent(20, true)?))) {
        Ok((report, recent)) => Html(dashboard::render_chain(&report, &recent)).into_response(),
        Err(e) => unavailable("cannot read the handover figures", e),
    }
}

async fn scorecard_page(State(state): State<AppState>) -> Response {
    state.quality.chain.caught_up(state.journal.last_sequence()).await;
    state.quality.complete().await;
    match state.quality.figures(&Filter::default()) {
        Ok((report, _)) => Html(dashboard::render_scorecard(&report.partners)).into_response(),
        Err(e) => unavailable("cannot read the quality figures", e),
    }
}

async fn case_page(State(state): State<AppState>, Path(pseudonym): Path<String>) -> Response {
    match state.quality.chain.store.case(&pseudonym) {
        Ok(Some(case)) => Html(dashboard::render_case(&pseudonym, &case)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no case with pseudonym {pseudonym:?}\n")).into_response(),
        Err(e) => unavailable("cannot read the case state", e),
    }
}

async fn quality_page(State(state): State<AppState>) -> Response {
    state.quality.complete().await;
    match state.quality.store.report(&Filter::default()) {
        Ok(report) => Html(dashboard::render(&report, "all partners, all days")).into_response(),
        Err(e) => unavailable("cannot read the quality figures", e),
    }
}
