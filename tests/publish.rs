//! The publish path through gRPC: validation, completeness, idempotency, streams.

mod common;

use common::*;
use loket_server::proto::{publish_stream_reply::Outcome, PublishRequest};
use serde_json::json;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_accepted_complete_and_sequenced() {
    let gw = Gateway::start().await;
    // DJI (detention and its medical service) may publish every type in the shipped policy.
    let mut client = gw.client("dji").await;
    let mut last = 0;
    for (i, t) in TYPES.iter().enumerate() {
        let reply = publish(&mut client, event("dji", t, &format!("e{i}"), &example(t))).await.unwrap();
        assert_eq!(reply.completeness, 1.0, "{t}: {:?}", reply.missing_expected);
        assert!(reply.missing_expected.is_empty());
        assert!(!reply.duplicate);
        assert_eq!(reply.dataschema, format!("urn:loket:schema:{t}:v1"));
        assert!(reply.sequence > last);
        last = reply.sequence;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expected_fields_lower_completeness() {
    let gw = Gateway::start().await;
    let mut client = gw.client("dji").await;
    let mut data = example("physical-features");
    let obj = data.as_object_mut().unwrap();
    obj.remove("eyeColour");
    obj.insert("hairColour".into(), json!(""));
    let reply = publish(&mut client, event("dji", "physical-features", "pf-1", &data)).await.unwrap();
    assert_eq!(reply.missing_expected, vec!["/eyeColour", "/hairColour"]);
    let list = gw.client("dji").await.list_schemas(loket_server::proto::ListSchemasRequest {}).await.unwrap();
    // ListSchemas names the type in reverse-DNS form, with the short name as its alias.
    let schema = list.into_inner().schemas.into_iter().find(|s| s.alias == "physical-features").unwrap();
    assert_eq!(schema.r#type, "nl.vreemdelingenketen.physical-features");
    let expected = schema.expected.len() as f64;
    assert!((reply.completeness - (expected - 2.0) / expected).abs() < 1e-9, "{}", reply.completeness);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failing_field_is_reported_at_once() {
    let gw = Gateway::start().await;
    let mut client = gw.client("dvo").await;
    let mut data = example("transport-status");
    let obj = data.as_object_mut().unwrap();
    obj.remove("transportId");
    obj.insert("status".into(), json!("cancelled"));
    obj.insert("departureKind".into(), json!("teleported"));
    obj.insert("colour".into(), json!("blue"));
    let status = publish(&mut client, event("dvo", "transport-status", "bad-1", &data)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "SCHEMA_VIOLATION");
    let fields = violation_fields(&status);
    for f in ["/transportId", "/cancellationReason", "/departureKind", "/colour"] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_input_has_its_own_error() {
    let gw = Gateway::start().await;
    let mut client = gw.client("dtv").await;
    let good = example("baggage");

    // Missing envelope attributes: all named at once.
    let mut e = event("dtv", "baggage", "", &good);
    e.r#type.clear();
    e.data.clear();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "INVALID_ENVELOPE"));
    assert_eq!(violation_fields(&s), vec!["@data", "@id", "@type"]);

    // No event at all.
    let s = client.publish(PublishRequest { event: None }).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "INVALID_ENVELOPE"));

    // A malformed subject and a wrong spec version.
    let mut e = event("dtv", "baggage", "x1", &good);
    e.subject = "12345".into();
    e.specversion = "0.3".into();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!(violation_fields(&s), vec!["@specversion", "@subject"]);

    // Unknown type, unknown schema version.
    let s = publish(&mut client, event("dtv", "luggage", "x2", &good)).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "UNKNOWN_TYPE"));
    let mut e = event("dtv", "baggage", "x3", &good);
    e.dataschema = "urn:loket:schema:baggage:v9".into();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "UNKNOWN_SCHEMA"));

    // Malformed JSON, and JSON that is not an object.
    let mut e = event("dtv", "baggage", "x4", &good);
    e.data = b"{\"vNumber\": \"0123456789\",".to_vec();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "MALFORMED_JSON"));
    assert!(s.message().contains("line 1"), "{}", s.message());
    let mut e = event("dtv", "baggage", "x5", &good);
    e.data = b"[1,2]".to_vec();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!(reason(&s), "MALFORMED_JSON");

    // Over the size limit.
    let mut big = good.clone();
    big["storageLocation"] = json!("x".repeat(300 * 1024));
    let s = publish(&mut client, event("dtv", "baggage", "x6", &big)).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::InvalidArgument, "PAYLOAD_TOO_LARGE"));

    // Subject and payload disagree about the case.
    let mut e = event("dtv", "baggage", "x7", &good);
    e.subject = "1111111111".into();
    let s = publish(&mut client, e).await.unwrap_err();
    assert_eq!(reason(&s), "SCHEMA_VIOLATION");
    assert_eq!(violation_fields(&s), vec!["/vNumber"]);

    // The gateway is still up and accepts a good event.
    publish(&mut client, event("dtv", "baggage", "ok", &good)).await.unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_are_duplicates_and_reused_ids_conflict() {
    let gw = Gateway::start().await;
    let mut client = gw.client("coa").await;
    let data = example("baggage");
    let first = publish(&mut client, event("coa", "baggage", "b-1", &data)).await.unwrap();
    // Same content, other whitespace and key order: still the same event.
    let mut resend = event("coa", "baggage", "b-1", &data);
    resend.data = serde_json::to_vec_pretty(&data).unwrap();
    let again = publish(&mut client, resend).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    assert_eq!(again.completeness, first.completeness);

    let mut changed = data.clone();
    changed["pieces"] = json!(7);
    let s = publish(&mut client, event("coa", "baggage", "b-1", &changed)).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::AlreadyExists, "ID_CONFLICT"));

    // Ids are per source: another partner may use the same id.
    let mut dtv = gw.client("dtv").await;
    let other = publish(&mut dtv, event("dtv", "baggage", "b-1", &data)).await.unwrap();
    assert!(!other.duplicate);
    assert_ne!(other.sequence, first.sequence);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stream_replies_in_order_and_survives_rejections() {
    let gw = Gateway::start().await;
    let mut client = gw.client("kmar").await;
    let mut requests = Vec::new();
    for i in 0..500 {
        let case = format!("{:010}", 1000 + i % 7);
        let mut e = event("kmar", "transport-status", &format!("s-{i}"), &example_for("transport-status", &case));
        if i % 50 == 25 {
            e.data = b"not json".to_vec();
        }
        requests.push(PublishRequest { event: Some(e) });
    }
    let replies: Vec<_> =
        client.publish_stream(tokio_stream::iter(requests)).await.unwrap().into_inner().collect_all().await;
    assert_eq!(replies.len(), 500);
    let mut last = 0;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.id, format!("s-{i}"));
        match reply.outcome.as_ref().unwrap() {
            Outcome::Accepted(a) => {
                assert!(i % 50 != 25);
                assert!(a.sequence > last, "replies out of order at {i}");
                last = a.sequence;
            }
            Outcome::Rejected(status) => {
                assert_eq!(i % 50, 25);
                assert_eq!(status.code, Code::InvalidArgument as i32);
                assert!(!status.details.is_empty(), "rejection carries details");
            }
        }
    }
    gw.stop().await;
}

trait CollectAll<T> {
    async fn collect_all(self) -> Vec<T>;
}

impl<T> CollectAll<T> for tonic::Streaming<T> {
    async fn collect_all(mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(item) = self.message().await.unwrap() {
            out.push(item);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_group_commits_without_gaps() {
    let gw = Gateway::start().await;
    let mut tasks = Vec::new();
    for p in ["dtv", "kmar", "dji", "dvo"] {
        let mut client = gw.client(p).await;
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..100 {
                let data = example_for("baggage", &format!("{:010}", i));
                seqs.push(
                    publish(&mut client, event(p, "baggage", &format!("{p}-{i}"), &data)).await.unwrap().sequence,
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one publisher's events keep their order");
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_taken_events_then_ends_open_streams_with_unavailable() {
    let gw = Gateway::start().await;
    let mut client = gw.client("kmar").await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut replies =
        client.publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    for i in 0..10 {
        let e = event("kmar", "baggage", &format!("open-{i}"), &example("baggage"));
        tx.send(PublishRequest { event: Some(e) }).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert!(matches!(reply.outcome, Some(Outcome::Accepted(_))));
    }
    // The stream stays open (tx alive) while the gateway shuts down.
    let stopping = tokio::spawn(gw.stop());
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), replies.message()).await.unwrap();
    let status = end.unwrap_err();
    assert_eq!((status.code(), reason(&status).as_str()), (Code::Unavailable, "SHUTTING_DOWN"));
    drop(tx);
    stopping.await.unwrap();
}
