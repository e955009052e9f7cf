//! Hostile and careless publishers against a running gateway: per-partner quotas, load
//! shedding, connection limits, idle streams and malformed protobuf. Each limit is shown
//! to trigger with its documented status and details while another partner's calls keep
//! succeeding (their success is measured, not their timing).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use loket_server::proto::{publish_stream_reply::Outcome, PublishReply, PublishRequest, PublishStreamReply};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;

/// An event the schema refuses (no vNumber).
fn invalid(source: &str, id: &str) -> loket_server::proto::CloudEvent {
    let mut data = example("baggage");
    data.as_object_mut().unwrap().remove("vNumber");
    let mut e = event(source, "baggage", id, &data);
    e.subject = "0000000001".into();
    e
}

fn valid(source: &str, id: &str) -> loket_server::proto::CloudEvent {
    event(source, "baggage", id, &example_for("baggage", "0000000007"))
}

/// Publishes `events` of `partner` on one stream, all sent at once; the replies.
async fn stream_all(
    gw: &Gateway,
    partner: &str,
    events: Vec<loket_server::proto::CloudEvent>,
) -> Vec<PublishStreamReply> {
    let mut client = gw.client(partner).await;
    let requests: Vec<PublishRequest> = events.into_iter().map(|e| PublishRequest { event: Some(e) }).collect();
    let mut replies = client.publish_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(reply) = replies.message().await.unwrap() {
        out.push(reply);
    }
    out
}

/// A stream reply's refusal as a tonic status (details included).
fn refusal(reply: &PublishStreamReply) -> Option<tonic::Status> {
    match reply.outcome.as_ref()? {
        Outcome::Accepted(_) => None,
        Outcome::Rejected(s) => {
            use prost::Message;
            let details = s.encode_to_vec();
            Some(tonic::Status::with_details(Code::from(s.code), s.message.clone(), details.into()))
        }
    }
}

async fn publish_ok(gw: &Gateway, partner: &str, n: usize, prefix: &str) -> Vec<Result<PublishReply, tonic::Status>> {
    let mut client = gw.client(partner).await;
    let mut out = Vec::new();
    for i in 0..n {
        out.push(publish(&mut client, valid(partner, &format!("{prefix}-{i}"))).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_quota_refuses_with_retry_info_and_quota_failure_while_others_publish() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[limits.partners.dtv]\nevents_per_second = 1\nburst = 3\n").await;
    let abusive = async {
        let mut client = gw.client("dtv").await;
        let mut out = Vec::new();
        // Valid and invalid events alike spend the quota: refusing costs the gateway too.
        for i in 0..16 {
            let e = if i % 2 == 0 { valid("dtv", &format!("r-{i}")) } else { invalid("dtv", &format!("r-{i}")) };
            out.push(publish(&mut client, e).await);
        }
        out
    };
    let (abusive, other) = tokio::join!(abusive, publish_ok(&gw, "dji", 16, "dji"));
    assert!(other.iter().all(Result::is_ok), "the other partner is unaffected: {other:?}");

    let over: Vec<&tonic::Status> =
        abusive.iter().filter_map(|r| r.as_ref().err()).filter(|s| s.code() == Code::ResourceExhausted).collect();
    assert!(over.len() >= 8, "16 calls against a bucket of 3 refilled at 1/s: {abusive:?}");
    for status in &over {
        let (reason, retry, quota) = exhausted(status);
        assert_eq!(reason, "QUOTA_EXCEEDED");
        assert!(retry.is_some_and(|d| !d.is_zero()), "RetryInfo with a delay: {status:?}");
        assert_eq!(quota, vec![("partner:dtv".to_owned(), "events_per_second: limit 1".to_owned())]);
    }
    // The invalid events that got through intake were refused for what they are.
    let invalid_refused = abusive.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::InvalidArgument)).count();
    assert!(abusive.iter().all(|r| r.is_ok() || matches!(r, Err(s) if s.code() != Code::Internal)));
    assert!(invalid_refused + over.len() >= 8);
    let counted = metric(
        gw.metrics_addr.unwrap(),
        "loket_quota_refused_total",
        &[("partner", "dtv"), ("quota", "events_per_second")],
    );
    assert!(counted.unwrap_or(0.0) >= over.len() as f64, "counted in /metrics: {counted:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_quota_bounds_a_partner_and_refusals_are_journalled_before_their_reply() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\nevents_per_second = 0\n[limits.partners.dtv]\nin_flight = 1\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let events: Vec<_> = (0..200).map(|i| invalid("dtv", &format!("f-{i}"))).collect();
    let (replies, other) = tokio::join!(stream_all(&gw, "dtv", events), publish_ok(&gw, "dji", 20, "dji"));
    assert!(other.iter().all(Result::is_ok), "the other partner is unaffected: {other:?}");
    assert_eq!(replies.len(), 200, "one reply per event");

    let mut rejected = 0;
    let mut over = 0;
    for reply in &replies {
        let status = refusal(reply).expect("no invalid event is accepted");
        match status.code() {
            Code::InvalidArgument => rejected += 1,
            Code::ResourceExhausted => {
                let (reason, retry, quota) = exhausted(&status);
                assert_eq!(reason, "QUOTA_EXCEEDED");
                assert!(retry.is_some());
                assert_eq!(quota, vec![("partner:dtv".to_owned(), "in_flight: limit 1".to_owned())]);
                over += 1;
            }
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    assert!(over > 0, "200 events sent at once against one in flight");
    assert!(rejected > 0);
    // Each refusal was answered after its entry in the rejection log was durable.
    let mut auditor = gw.client("quality").await;
    let request = loket_server::proto::ExportRequest {
        outcomes: loket_server::proto::Outcomes::Rejected as i32,
        sources: vec!["dtv".into()],
        ..Default::default()
    };
    let mut entries = auditor.export(request).await.unwrap().into_inner();
    let mut logged = 0;
    while let Some(entry) = entries.message().await.unwrap() {
        logged += usize::from(entry.rejection > 0);
    }
    assert_eq!(logged, rejected, "every INVALID_ARGUMENT reply has its rejection-log entry, quota refusals none");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_high_water_mark_publishes_are_shed_with_retry_info() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\nevents_per_second = 0\nshed_queue_depth = 1\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let batch = |p: &'static str| (0..300).map(|i| valid(p, &format!("{p}-s-{i}"))).collect::<Vec<_>>();
    let (a, b) = tokio::join!(stream_all(&gw, "dtv", batch("dtv")), stream_all(&gw, "dji", batch("dji")));
    let mut shed = 0;
    let mut accepted = 0;
    for reply in a.iter().chain(&b) {
        match refusal(reply) {
            None => accepted += 1,
            Some(status) => {
                let (reason, retry, _) = exhausted(&status);
                assert_eq!(reason, "OVERLOADED", "{status:?}");
                assert!(retry.is_some(), "RetryInfo: {status:?}");
                shed += 1;
            }
        }
    }
    assert_eq!(a.len() + b.len(), 600, "no stream was broken off");
    assert!(shed > 0 && accepted > 0, "shed {shed}, accepted {accepted}");
    // Once the queue has drained, publishing works again.
    assert!(publish_ok(&gw, "dtv", 1, "after").await[0].is_ok());
    assert!(metric(gw.metrics_addr.unwrap(), "loket_publish_shed_total", &[]).unwrap_or(0.0) >= 1.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_gateway_admission_rate_publishes_are_shed_for_every_partner() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[limits]\nevents_per_second = 0\ngateway_events_per_second = 5\n").await;
    let batch = |p: &'static str| (0..40).map(|i| valid(p, &format!("{p}-g-{i}"))).collect::<Vec<_>>();
    let (a, b) = tokio::join!(stream_all(&gw, "dtv", batch("dtv")), stream_all(&gw, "dji", batch("dji")));
    let shed: Vec<tonic::Status> = a.iter().chain(&b).filter_map(refusal).collect();
    assert!(shed.len() >= 60, "80 events against 5/s: {} shed", shed.len());
    for status in &shed {
        let (reason, retry, quota) = exhausted(status);
        assert_eq!(reason, "OVERLOADED");
        assert!(retry.is_some_and(|d| !d.is_zero()));
        assert!(quota.is_empty(), "not a partner's quota");
    }
    gw.stop().await;
}

/// Connects from `source` (a loopback address) and sends nothing.
async fn idle(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the gateway closes `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_stop_a_partner_and_are_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[grpc]\nhandshake_timeout_secs = 2\nmax_connections = 3000\nmax_connections_per_address = 3000\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let mut idle_ones = Vec::new();
    for _ in 0..2000 {
        idle_ones.push(idle("127.0.0.1", gw.addr).await);
    }
    let published = publish_ok(&gw, "dtv", 5, "legit").await;
    assert!(published.iter().all(Result::is_ok), "{published:?}");
    let mut closed = 0;
    for stream in &mut idle_ones {
        closed += usize::from(closed_within(stream, Duration::from_secs(60)).await);
    }
    assert_eq!(closed, 2000, "every idle connection is closed by the handshake timeout");
    assert!(metric(gw.metrics_addr.unwrap(), "loket_tls_handshake_timeouts_total", &[]).unwrap_or(0.0) >= 2000.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limits_are_closed_at_once_and_other_clients_still_publish() {
    let dir = tempfile::tempdir().unwrap();
    // A long handshake timeout: a connection closed within the test was closed by a limit.
    let config = "[grpc]\nhandshake_timeout_secs = 600\nmax_connections = 6\nmax_connections_per_address = 3\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let mut from_two = Vec::new();
    for _ in 0..3 {
        from_two.push(idle("127.0.0.2", gw.addr).await);
    }
    let mut fourth = idle("127.0.0.2", gw.addr).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(10)).await, "past max_connections_per_address");
    for stream in &mut from_two {
        assert!(!closed_within(stream, Duration::from_millis(100)).await, "the first three stay open");
    }
    // Another address still gets in and publishes (one connection, kept: 4 of 6).
    let mut legit = gw.client("dtv").await;
    for i in 0..3 {
        publish(&mut legit, valid("dtv", &format!("legit-{i}"))).await.unwrap();
    }
    let _more = (idle("127.0.0.3", gw.addr).await, idle("127.0.0.4", gw.addr).await);
    let mut seventh = idle("127.0.0.5", gw.addr).await;
    assert!(closed_within(&mut seventh, Duration::from_secs(10)).await, "past max_connections");
    let addr = gw.metrics_addr.unwrap();
    for limit in ["max_connections_per_address", "max_connections"] {
        assert!(metric(addr, "loket_connections_refused_total", &[("limit", limit)]).unwrap_or(0.0) >= 1.0, "{limit}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gets_no_more_calls_at_once_than_max_concurrent_streams() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[grpc]\nmax_concurrent_streams = 2\n").await;
    // One connection: two subscriber streams take both of its slots.
    let mut client = gw.client("kmar").await;
    let request = || loket_server::proto::SubscribeRequest {
        start: Some(loket_server::proto::subscribe_request::Start::Earliest(loket_server::proto::Earliest {})),
        ..Default::default()
    };
    let first = client.subscribe(request()).await.unwrap().into_inner();
    let _second = client.subscribe(request()).await.unwrap().into_inner();
    let mut third = client.clone();
    let call = tokio::spawn(async move { third.list_schemas(loket_server::proto::ListSchemasRequest {}).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "a third call waits for a free stream");
    // Another connection is not affected.
    assert!(publish_ok(&gw, "dtv", 1, "other-connection").await[0].is_ok());
    drop(first);
    let listed = tokio::time::timeout(Duration::from_secs(30), call).await.expect("served once a slot is free");
    assert!(listed.unwrap().is_ok());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_publish_stream_is_ended_with_stream_idle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[grpc]\nstream_idle_timeout_secs = 1\n").await;
    let mut client = gw.client("dtv").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies =
        client.publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(PublishRequest { event: Some(valid("dtv", "idle-1")) }).await.unwrap();
    let first = replies.message().await.unwrap().unwrap();
    assert!(matches!(first.outcome, Some(Outcome::Accepted(_))));
    // Nothing more is sent (the sender stays open): the gateway ends the stream.
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "STREAM_IDLE");
    drop(tx);
    gw.stop().await;
}

/// Encodes requests as given bytes, for sending what no client library would.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = PublishReply;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<PublishReply>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_publish_are_invalid_argument() {
    let gw = Gateway::start().await;
    let (endpoint, _) = loket_server::client::endpoint(&gw.options("dtv")).unwrap();
    let mut grpc = tonic::client::Grpc::new(endpoint.connect().await.unwrap());
    // A truncated varint, a wrong wire type and plain noise.
    for bytes in [vec![0x0a, 0xff], vec![0x0f, 0x01, 0x02], b"\xff\xfe\xfd random bytes \x00\x01".to_vec()] {
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/loket.v1.Gateway/Publish");
        let status = grpc.unary(tonic::Request::new(bytes.clone()), path, RawCodec).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bytes:?}: {status:?}");
        assert_eq!(reason(&status), "MALFORMED_MESSAGE");
    }
    // The connection is still good for a well-formed call.
    let mut client = gw.client("dtv").await;
    assert!(publish(&mut client, valid("dtv", "after-noise")).await.is_ok());
    gw.stop().await;
}

/// Runs the binary off the async threads (the gateway under test shares the runtime).
async fn loket(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loket_publish_waits_as_the_retry_info_advises() {
    let dir = tempfile::tempdir().unwrap();
    let gw =
        Gateway::start_in(&dir.path().join("gw"), "[limits.partners.dtv]\nevents_per_second = 1\nburst = 1\n").await;
    let data = dir.path().join("baggage.json");
    std::fs::write(&data, serde_json::to_vec(&example("baggage")).unwrap()).unwrap();
    for i in 0..3 {
        let certs = gw.certs_dir().display().to_string();
        let args = ["publish", "--server", &gw.url(), "--certs", &certs, "--as", "dtv", "--type", "baggage"];
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["--data".to_owned(), data.display().to_string(), "--id".to_owned(), format!("cli-{i}")]);
        let out = loket(args).await;
        assert!(out.status.success(), "publish {i} within a quota of 1/s: {}", text(&out));
    }
    let refused = metric(gw.metrics_addr.unwrap(), "loket_quota_refused_total", &[("partner", "dtv")]);
    assert!(refused.unwrap_or(0.0) >= 1.0, "the quota was hit and waited out: {refused:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loket_replay_resends_what_the_quota_refused_and_matches_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(&dir.path().join("gw"), "[limits]\nevents_per_second = 40\nburst = 5\n").await;
    let log = dir.path().join("gen.ndjson");
    let o = loket(
        ["gen", "--seed", "5", "--cases", "6", "-o"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([log.display().to_string()])
            .collect(),
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let certs = gw.certs_dir().display().to_string();
    let args = ["replay", &log.display().to_string(), "--server", &gw.url(), "--certs", &certs, "--expect-recorded"];
    let out = loket(args.iter().map(|s| (*s).to_owned()).collect()).await;
    assert_eq!(out.status.code(), Some(0), "every outcome as recorded: {}", text(&out));
    let refused = metric(gw.metrics_addr.unwrap(), "loket_quota_refused_total", &[("quota", "events_per_second")]);
    assert!(refused.unwrap_or(0.0) >= 1.0, "the replay ran into the quota: {refused:?}");
    gw.stop().await;
}
