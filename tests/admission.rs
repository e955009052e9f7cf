//! The gateway-wide limit of unary publishes in flight (`[limits] gateway_in_flight`,
//! adapted to `publish_latency_target_ms`): with the limit reached, a publish is refused
//! at once with RESOURCE_EXHAUSTED (reason OVERLOADED, RetryInfo), before any work; once
//! places are free, every partner publishes again. Success is counted, never timed.

mod common;

use std::time::Duration;

use common::*;

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
    assert_eq!(metric(metrics, "loket_publish_admission_refused_total", &[]), Some(5.0));
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
) -> impl std::future::Future<Output = Result<loket_server::proto::PublishReply, tonic::Status>> + Send + 'static {
    let options = gw.options(partner);
    async move { publish_without_body(&options).await }
}
