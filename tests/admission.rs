//! The gateway-wide limit of unary publishes in flight (`[limits] gateway_in_flight`,
//! adapted to `publish_latency_target_ms`): with the limit reached, a publish is refused
//! at once with RESOURCE_EXHAUSTED (reason OVERLOADED, RetryInfo), before any work; once
//! places are free, every partner publishes again. The places are shared fairly: a
//! partner holding its share is refused while another partner's publish is admitted.
//! Success is counted, never timed.

mod common;

use std::time::Duration;

use common::*;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::PublishReply;

fn valid(source: &str, id: &str) -> loket_server::proto::CloudEvent {
    event(source, "baggage", id, &example_for("baggage", "0000000007"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gateway_limit_in_flight_reached_publishes_are_shed_and_others_publish_once_it_frees() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed limit of 4 (no adaptation), and no per-partner rate in the way.
    let config = "[limits]\nevents_per_second = 0\ngateway_in_flight = 4\npublish_latency_target_ms = 0\n";
    let gw = Gateway::start_in(dir.path(), config).await;

    // Eight publishes of kmar whose message never comes: four take the places and hold
    // them, the other four are refused at once.
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(publish_without_body_of(&gw, "kmar"))).collect();
    for _ in 0..600 {
        if calls.iter().filter(|c| c.is_finished()).count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ended, held): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| c.is_finished());
    assert_eq!((ended.len(), held.len()), (4, 4), "four admitted and held, four refused");
    let mut refusals = Vec::new();
    for call in ended {
        refusals.push(call.await.unwrap().expect_err("refused"));
    }
    // With the four places held, another partner's publish is refused too.
    let mut dji = gw.client("dji").await;
    refusals.push(publish(&mut dji, valid("dji", "dji-held")).await.expect_err("refused"));
    for status in &refusals {
        let (reason, retry, quota) = exhausted(status);
        assert_eq!(reason, "OVERLOADED", "{status:?}");
        assert!(retry.is_some_and(|d| !d.is_zero()), "RetryInfo: {status:?}");
        assert!(quota.is_empty(), "the gateway's limit, not a partner's quota: {quota:?}");
    }
    let metrics = gw.metrics_addr.unwrap();
    // (At least: the other tests of this binary share the metrics recorder.)
    let by_limit = metric(metrics, "loket_publish_admission_refused_total", &[("reason", "limit")]);
    assert!(by_limit.is_some_and(|n| n >= 5.0), "{by_limit:?}");
    assert_eq!(metric(metrics, "loket_publish_admission_limit", &[]), Some(4.0));

    // kmar gives up its calls: their places are freed, and dji and dtv publish again.
    for call in &held {
        call.abort();
    }
    let mut first = None;
    for i in 0..200 {
        if let Ok(reply) = publish(&mut dji, valid("dji", &format!("dji-freed-{i}"))).await {
            first = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(first.is_some(), "dji publishes once the held calls are gone");
    let mut dtv = gw.client("dtv").await;
    for i in 0..10 {
        publish(&mut dtv, valid("dtv", &format!("dtv-after-{i}"))).await.unwrap();
        publish(&mut dji, valid("dji", &format!("dji-after-{i}"))).await.unwrap();
    }
    gw.stop().await;
}

fn publish_without_body_of(
    gw: &Gateway,
    partner: &str,
) -> impl std::future::Future<Output = Result<PublishReply, tonic::Status>> + Send + 'static {
    let options = gw.options(partner);
    async move { publish_without_body(&options).await }
}

/// A publish whose message never comes, holding a place in flight; made again while
/// refused (a probe of the test may hold a place for a moment as it arrives).
fn hold_a_place(options: ClientOptions) -> tokio::task::JoinHandle<Result<PublishReply, tonic::Status>> {
    tokio::spawn(async move {
        loop {
            match publish_without_body(&options).await {
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ended => return ended,
            }
        }
    })
}

/// Four places shared by dji and dtv: dji holds one, dtv two (its share). dtv's next
/// publish is refused, dji's is admitted and succeeds. `options` says how a partner
/// connects (mutual TLS: shares by certificate; insecure: by the partner header).
async fn a_partner_at_its_share_is_refused_while_another_publishes(
    gw: &Gateway,
    options: impl Fn(&str) -> ClientOptions,
) {
    let hold = |partner: &str| hold_a_place(options(partner));
    let held = [hold("dji"), hold("dtv"), hold("dtv")];
    // Once dtv's two calls hold their places, with dji's holding one or refused a moment
    // ago, dtv's next publish is refused; before that it is admitted and succeeds. First
    // come, first served would admit it into a free place.
    let mut dtv = connect(&options("dtv")).await.unwrap();
    let mut refused = None;
    for i in 0..600 {
        match publish(&mut dtv, valid("dtv", &format!("dtv-probe-{i}"))).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("dtv is refused once it holds its share");
    let (reason, retry, quota) = exhausted(&status);
    assert_eq!(reason, "OVERLOADED", "{status:?}");
    assert!(retry.is_some_and(|d| !d.is_zero()), "RetryInfo: {status:?}");
    assert!(quota.is_empty(), "the gateway's limit, not a partner's quota: {quota:?}");
    let metrics = gw.metrics_addr.unwrap();
    assert!(metric(metrics, "loket_publish_admission_refused_total", &[("reason", "share")]).is_some_and(|n| n >= 1.0));

    let mut dji = connect(&options("dji")).await.unwrap();
    publish(&mut dji, valid("dji", "dji-within-share")).await.expect("dji is below its share");
    assert!(held.iter().all(|call| !call.is_finished()), "the held calls still hold (or want) their places");
    for call in held {
        call.abort();
    }
}

const FOUR_PLACES: &str = "[limits]\nevents_per_second = 0\ngateway_in_flight = 4\npublish_latency_target_ms = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_holding_its_fair_share_is_refused_while_another_partner_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), FOUR_PLACES).await;
    a_partner_at_its_share_is_refused_while_another_publishes(&gw, |partner| gw.options(partner)).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_insecure_gateway_the_fair_shares_go_by_the_partner_header() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), &format!("[grpc]\ninsecure = true\n{FOUR_PLACES}")).await;
    let url = format!("http://127.0.0.1:{}", gw.addr.port());
    let options = |partner: &str| ClientOptions {
        server: url.clone(),
        certs: dir.path().to_owned(),
        partner: partner.to_owned(),
    };
    a_partner_at_its_share_is_refused_while_another_publishes(&gw, options).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_publish_over_its_partners_rate_is_refused_before_the_admission_and_charged_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\ngateway_in_flight = 4\npublish_latency_target_ms = 0\n\
                  [limits.partners.dtv]\nevents_per_second = 1\nburst = 10\n";
    let gw = Gateway::start_in(dir.path(), config).await;

    // Charged once per publish (in the layer, not again at the handler): the burst of 10
    // gives at least 10 publishes (more if a token comes back meanwhile).
    let mut dtv = gw.client("dtv").await;
    let mut published = 0;
    let over_rate = loop {
        match publish(&mut dtv, valid("dtv", &format!("dtv-rate-{published}"))).await {
            Ok(_) => published += 1,
            Err(status) => break status,
        }
    };
    assert!(published >= 10, "the burst of 10, charged once each: {published} published");
    let (reason, retry, quota) = exhausted(&over_rate);
    assert_eq!(reason, "QUOTA_EXCEEDED", "{over_rate:?}");
    assert!(retry.is_some_and(|d| !d.is_zero()), "RetryInfo: {over_rate:?}");
    assert!(quota.iter().any(|(subject, _)| subject == "partner:dtv"), "{quota:?}");

    // kmar takes all four places (its probe is refused once they are held) ...
    let held: Vec<_> = (0..4).map(|_| hold_a_place(gw.options("kmar"))).collect();
    let mut kmar = gw.client("kmar").await;
    let mut full = false;
    for i in 0..600 {
        if publish(&mut kmar, valid("kmar", &format!("kmar-probe-{i}"))).await.is_err() {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(full, "kmar's four calls hold every place");
    // ... and dtv, over its rate, is told so (QUOTA_EXCEEDED), not OVERLOADED: its rate is
    // checked before the admission, so a call over it takes no place. (A token that came
    // back meanwhile is spent on one OVERLOADED refusal first.)
    let mut reasons = Vec::new();
    for i in 0..3 {
        let status = publish(&mut dtv, valid("dtv", &format!("dtv-full-{i}"))).await.expect_err("no place, no token");
        reasons.push(exhausted(&status).0);
    }
    assert!(reasons.iter().any(|r| r == "QUOTA_EXCEEDED"), "{reasons:?}");
    let metrics = gw.metrics_addr.unwrap();
    let refused = metric(metrics, "loket_quota_refused_total", &[("partner", "dtv"), ("quota", "events_per_second")]);
    assert!(refused.is_some_and(|n| n >= 2.0), "{refused:?}");
    for call in held {
        call.abort();
    }
    gw.stop().await;
}
