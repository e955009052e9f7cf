//! Subscriptions through gRPC: start positions, durable names, acknowledgements,
//! redelivery and resumption across a gateway restart.

mod common;

use std::time::Duration;

use common::*;
use loket_server::client::Client;
use loket_server::proto::{subscribe_request::Start, AckRequest, Delivery, Earliest, Latest, SubscribeRequest};
use prost_types::Timestamp;
use tonic::Code;

async fn publish_n(client: &mut Client, source: &str, from: usize, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in from..from + n {
        let data = example_for("baggage", &format!("{:010}", i % 3));
        seqs.push(publish(client, event(source, "baggage", &format!("ev-{i}"), &data)).await.unwrap().sequence);
    }
    seqs
}

fn request(start: Start, name: &str, limit: u64) -> SubscribeRequest {
    SubscribeRequest { types: vec![], start: Some(start), name: name.to_owned(), limit }
}

async fn take(client: &mut Client, req: SubscribeRequest, n: usize) -> Vec<Delivery> {
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        match next.expect("delivery within 10 s").unwrap() {
            Some(d) => out.push(d),
            None => break,
        }
    }
    out
}

fn seqs(d: &[Delivery]) -> Vec<u64> {
    d.iter().map(|d| d.sequence).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions() {
    let gw = Gateway::start().await;
    let mut pub_client = gw.client("dtv").await;
    let first = publish_n(&mut pub_client, "dtv", 0, 5).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = publish_n(&mut pub_client, "dtv", 5, 5).await;
    let mut sub = gw.client("kmar").await;

    let all = take(&mut sub, request(Start::Earliest(Earliest {}), "", 10), 10).await;
    assert_eq!(seqs(&all), [first.clone(), second.clone()].concat());
    let e = all[0].event.as_ref().unwrap();
    // Delivered in the NL GOV profile's names: a reverse-DNS type (the partner has no OIN
    // configured, so the source is its id).
    assert_eq!(
        (e.source.as_str(), e.r#type.as_str(), e.specversion.as_str()),
        ("dtv", "nl.vreemdelingenketen.baggage", "1.0")
    );
    assert_eq!(e.subject, "0000000000");
    assert_eq!(all[0].completeness, 1.0);

    let from_seq = take(&mut sub, request(Start::Sequence(first[3]), "", 3), 3).await;
    assert_eq!(seqs(&from_seq), vec![first[3], first[4], second[0]]);

    let ts = Timestamp { seconds: between.as_secs() as i64, nanos: between.subsec_nanos() as i32 };
    let from_time = take(&mut sub, request(Start::Time(ts), "", 5), 5).await;
    assert_eq!(seqs(&from_time), second);

    // Latest: only what is published after the subscription starts.
    let mut stream = sub.subscribe(request(Start::Latest(Latest {}), "", 2)).await.unwrap().into_inner();
    let later = publish_n(&mut pub_client, "dtv", 10, 2).await;
    let mut got = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap() {
        got.push(d.sequence);
    }
    assert_eq!(got, later, "the stream ends after the limit");

    // A type filter.
    let mut typed = request(Start::Earliest(Earliest {}), "", 1);
    typed.types = vec!["physical-features".into()];
    publish(&mut pub_client, event("dtv", "physical-features", "pf", &example("physical-features"))).await.unwrap();
    let only = take(&mut sub, typed.clone(), 1).await;
    assert_eq!(only[0].event.as_ref().unwrap().r#type, "nl.vreemdelingenketen.physical-features");
    // The reverse-DNS name selects the same.
    typed.types = vec!["nl.vreemdelingenketen.physical-features".into()];
    let again = take(&mut sub, typed, 1).await;
    let (a, b) = (again[0].event.as_ref().unwrap(), only[0].event.as_ref().unwrap());
    assert_eq!((&a.id, &a.r#type), (&b.id, &b.r#type));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused() {
    let gw = Gateway::start().await;
    let mut sub = gw.client("kmar").await;
    let mut req = request(Start::Earliest(Earliest {}), "no spaces allowed", 0);
    req.types = vec!["luggage".into()];
    let s = sub.subscribe(req).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "INVALID_SUBSCRIPTION"));
    assert_eq!(violation_fields(&s), vec!["name", "types"]);

    let s = sub.ack(AckRequest { name: "never-made".into(), sequence: 0 }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = sub.ack(AckRequest { name: "never-made".into(), sequence: 99 }).await.unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_are_delivered_again() {
    let gw = Gateway::start().await;
    let mut pub_client = gw.client("dtv").await;
    let published = publish_n(&mut pub_client, "dtv", 0, 6).await;
    let mut sub = gw.client("kmar").await;

    let got = take(&mut sub, request(Start::Earliest(Earliest {}), "kmar-main", 4), 4).await;
    assert_eq!(seqs(&got), published[..4]);
    // Acknowledge only the first two; the other two were received but not processed.
    let acked = sub.ack(AckRequest { name: "kmar-main".into(), sequence: got[1].sequence }).await.unwrap();
    assert_eq!(acked.into_inner().acked, published[1]);

    // Reconnect: the start position is ignored for an existing subscription.
    let again = take(&mut sub, request(Start::Latest(Latest {}), "kmar-main", 4), 4).await;
    assert_eq!(seqs(&again), published[2..]);

    // Acknowledgements never move backwards.
    sub.ack(AckRequest { name: "kmar-main".into(), sequence: published[5] }).await.unwrap();
    let r = sub.ack(AckRequest { name: "kmar-main".into(), sequence: published[0] }).await.unwrap();
    assert_eq!(r.into_inner().acked, published[5]);

    // Names are per partner: dji's "kmar-main" is a different subscription.
    let mut dji = gw.client("dji").await;
    let theirs = take(&mut dji, request(Start::Earliest(Earliest {}), "kmar-main", 1), 1).await;
    assert_eq!(theirs[0].sequence, published[0]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_subscription_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "").await;
    let mut pub_client = gw.client("dtv").await;
    let published = publish_n(&mut pub_client, "dtv", 0, 5).await;
    let mut sub = gw.client("dji").await;
    let got = take(&mut sub, request(Start::Earliest(Earliest {}), "dji-1", 3), 3).await;
    sub.ack(AckRequest { name: "dji-1".into(), sequence: got[2].sequence }).await.unwrap();
    drop((pub_client, sub));
    gw.stop().await;

    let gw = Gateway::start_in(dir.path(), "").await;
    let mut pub_client = gw.client("dtv").await;
    let more = publish_n(&mut pub_client, "dtv", 5, 2).await;
    let mut sub = gw.client("dji").await;
    let resumed = take(&mut sub, request(Start::Earliest(Earliest {}), "dji-1", 4), 4).await;
    assert_eq!(seqs(&resumed), [published[3..].to_vec(), more].concat());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_subscriber_follows_new_events_in_order() {
    let gw = Gateway::start().await;
    let mut sub = gw.client("kmar").await;
    let mut stream = sub.subscribe(request(Start::Earliest(Earliest {}), "", 300)).await.unwrap().into_inner();
    let mut tasks = Vec::new();
    for p in ["dtv", "dji", "dvo"] {
        let mut c = gw.client(p).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let data = example_for("baggage", &format!("{:010}", i % 5));
                publish(&mut c, event(p, "baggage", &format!("{p}-{i}"), &data)).await.unwrap();
            }
        }));
    }
    let mut got = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap() {
        got.push(d);
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(seqs(&got), (1..=300).collect::<Vec<_>>());
    // Per publisher and case, the order of publication is kept.
    for p in ["dtv", "dji", "dvo"] {
        let ids: Vec<usize> = got
            .iter()
            .filter_map(|d| d.event.as_ref())
            .filter(|e| e.source == p)
            .map(|e| e.id.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
    }
    gw.stop().await;
}
