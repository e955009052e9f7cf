//! Trace context end to end through `loket serve`: a publisher's `traceparent` comes out
//! with the same trace id and a span of the gateway's on the gRPC delivery and the Kafka
//! record, and the spans (intake, journal, delivery, relay) reach an OTLP collector, a stub
//! in this test, under that trace, each wire `traceparent` naming an exported span. The
//! gateway logs JSON lines (`[log] format = "json"`). Needs the broker of `tests/run`.

mod common;

use std::sync::{Arc, Mutex};

use common::kafka::{read_topic, record_key_file, shared_broker, unique_prefix};
use common::*;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{subscribe_request::Start, Earliest, PublishRequest, SubscribeRequest};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PUBLISHER_SPAN: &str = "b7ad6b7169203331";

/// One exported span: name, trace id, span id, parent span id (hex).
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    trace: String,
    span: String,
    parent: String,
}

/// An OTLP/gRPC trace collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Exported>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans.map(|s| Exported {
            name: s.name,
            trace: hex::encode(s.trace_id),
            span: hex::encode(s.span_id),
            parent: hex::encode(s.parent_span_id),
        }));
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// (trace id, span id) of a traceparent.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_trace_continues_on_every_hop_and_its_spans_reach_the_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let brokers = shared_broker();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let toml = format!(
        "[telemetry]\notlp_endpoint = \"http://{collector_addr}\"\n[log]\nformat = \"json\"\n\
         [quality]\nchain_dir = {no_handovers:?}\n\
         [kafka]\nbrokers = {brokers:?}\ntopic_prefix = {prefix:?}\npartitions = 1\nrecord_key_file = {:?}\n",
        record_key_file()
    );
    let gw = ServeProcess::spawn(&data_dir, &toml);
    let options =
        |partner: &str| ClientOptions { server: gw.url(), certs: data_dir.join("certs"), partner: partner.to_owned() };

    let mut dvo = connect(&options("dvo")).await.unwrap();
    let event = event("dvo", "transport-status", "ts-traced", &example_for("transport-status", "1000000007"));
    let mut request = tonic::Request::new(PublishRequest { event: Some(event) });
    let traceparent = format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    request.metadata_mut().insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    dvo.publish(request).await.unwrap();

    // The gRPC delivery: the same trace, a span of its own.
    let mut dtv = connect(&options("dtv")).await.unwrap();
    let subscribe = SubscribeRequest {
        types: vec!["transport-status".into()],
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: 1,
    };
    let delivery = dtv.subscribe(subscribe).await.unwrap().into_inner().message().await.unwrap().unwrap();
    let extensions = delivery.event.unwrap().extensions;
    let (trace, delivery_span) = ids(&extensions["traceparent"]);
    assert_eq!(trace, TRACE_ID);
    assert_ne!(delivery_span, PUBLISHER_SPAN);
    assert_eq!(extensions["tracestate"], "congo=t61rcWkgMzE", "the publisher's tracestate passes on");

    // The Kafka record: the same trace, another span.
    let records = read_topic(&brokers, &format!("{prefix}delivery.dtv"), 1);
    let record = records.iter().find(|r| r.header("ce_id") == "ts-traced").unwrap();
    let (trace, record_span) = ids(record.header("ce_traceparent"));
    assert_eq!(trace, TRACE_ID);
    assert!(record_span != PUBLISHER_SPAN && record_span != delivery_span);
    assert_eq!(record.header("ce_tracestate"), "congo=t61rcWkgMzE");

    // Stopping the gateway flushes its spans to the collector.
    let log = gw.log.clone();
    assert_eq!(gw.terminate(), Some(0));
    let spans: Vec<Exported> = collector.0.lock().unwrap().iter().filter(|s| s.trace == TRACE_ID).cloned().collect();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let intake = named("intake");
    assert_eq!(intake.len(), 1, "{spans:#?}");
    assert_eq!(intake[0].parent, PUBLISHER_SPAN, "the intake continues the publisher's span");
    assert!(named("journal").iter().any(|s| s.parent == intake[0].span), "{spans:#?}");
    let delivery = named("delivery");
    assert!(
        delivery.iter().any(|s| s.span == delivery_span && s.parent == intake[0].span),
        "the delivery's traceparent names an exported span under the intake: {spans:#?}"
    );
    assert!(
        named("relay").iter().any(|s| s.span == record_span && s.parent == intake[0].span),
        "the record's traceparent names an exported relay span: {spans:#?}"
    );
    // Every log line is one JSON object.
    let lines = log.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("loket gateway serving")));
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    server.abort();
}
