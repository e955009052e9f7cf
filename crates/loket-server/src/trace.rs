//! Trace context across the gateway (W3C Trace Context, the CloudEvents distributed-tracing
//! extension): what a publish carries in, and the `traceparent` of each later hop. The
//! stored event keeps the trace id and the intake's span id; every delivery and Kafka
//! record names a span of its own under the same trace id.
//!
//! Each hop is also a `tracing` span (intake, journal, delivery; the relay's through the
//! OpenTelemetry tracer itself, see [`relay_hop`]). With the
//! OpenTelemetry layer installed (`[telemetry] otlp_endpoint`, set up by the binary) the
//! span continues the stored trace and its OpenTelemetry span id is the hop's span id, so
//! the exported spans and the `traceparent` on the wire name the same spans; without it the
//! span id is random.

use loket_domain::TraceParent;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context of a publish call's gRPC metadata (`traceparent`, `tracestate`).
/// An event's own extensions take precedence; a malformed header is ignored, as W3C asks.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallTrace {
    pub parent: Option<TraceParent>,
    pub state: Option<String>,
}

impl CallTrace {
    pub fn of(metadata: &MetadataMap) -> Self {
        let text = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let parent = text("traceparent").as_deref().and_then(TraceParent::parse);
        let state = parent.and(text("tracestate")).filter(|s| loket_domain::trace::valid_tracestate(s));
        CallTrace { parent, state }
    }
}

/// A fresh span id: random, never all zeros.
pub(crate) fn new_span_id() -> [u8; 8] {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let id: [u8; 8] = bytes[8..].try_into().expect("8 bytes");
        if id != [0; 8] {
            return id;
        }
    }
}

/// A new trace, for an event whose publisher sent none.
pub(crate) fn new_trace() -> TraceParent {
    let mut trace_id = uuid::Uuid::new_v4().into_bytes();
    // The version nibble of a v4 UUID is no randomness; W3C does not ask for any.
    trace_id[0] |= 1;
    TraceParent { trace_id, span_id: new_span_id(), flags: 1 }
}

/// Makes `span` the next hop of the trace `parent` (none: a new trace) and returns the
/// traceparent that names it.
pub(crate) fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    if let Some(p) = parent {
        let remote = SpanContext::new(
            TraceId::from_bytes(p.trace_id),
            SpanId::from_bytes(p.span_id),
            TraceFlags::new(p.flags),
            true,
            TraceState::default(),
        );
        // Fails only without the OpenTelemetry layer, and then the ids below are ours.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        return TraceParent {
            trace_id: own.trace_id().to_bytes(),
            span_id: own.span_id().to_bytes(),
            flags: own.trace_flags().to_u8(),
        };
    }
    parent.map_or_else(new_trace, |p| p.child(new_span_id()))
}

/// The `traceparent` of the next hop of a stored event's trace (`stored`, its intake's
/// traceparent), made by `span`. Events stored before the gateway kept traces (and its own
/// events) start a trace here.
pub(crate) fn next_hop(stored: &str, span: &tracing::Span) -> String {
    continue_trace(span, TraceParent::parse(stored)).to_string()
}

/// The `traceparent` of a Kafka record of the stored event (`stored`, its intake's
/// traceparent) for `reader`'s topic. The relay re-produces records after a crash and they
/// must be the same records, so the span id is derived from the trace, the reader and the
/// record (its id and sequence) rather than drawn; the `relay` span is exported under that
/// id through the process's OpenTelemetry tracer (none is installed without
/// `[telemetry]`). An event stored without a trace gets a derived trace id as well.
pub(crate) fn relay_hop(stored: &str, reader: &str, id: &str, sequence: u64) -> String {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(stored.len().to_be_bytes())
        .chain_update(stored)
        .chain_update(reader.len().to_be_bytes())
        .chain_update(reader)
        .chain_update(sequence.to_be_bytes())
        .chain_update(id)
        .finalize()
        .into();
    let mut span_id: [u8; 8] = digest[..8].try_into().expect("8 bytes");
    span_id[0] |= 1;
    let parent = TraceParent::parse(stored);
    let hop = match parent {
        Some(p) => p.child(span_id),
        None => {
            let mut trace_id: [u8; 16] = digest[16..].try_into().expect("16 bytes");
            trace_id[0] |= 1;
            TraceParent { trace_id, span_id, flags: 1 }
        }
    };
    let tracer = opentelemetry::global::tracer("loket");
    let builder = tracer
        .span_builder("relay")
        .with_span_id(SpanId::from_bytes(hop.span_id))
        .with_trace_id(TraceId::from_bytes(hop.trace_id))
        .with_attributes([
            opentelemetry::KeyValue::new("reader", reader.to_owned()),
            opentelemetry::KeyValue::new("sequence", sequence as i64),
        ]);
    let context = match parent {
        Some(p) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(p.trace_id),
            SpanId::from_bytes(p.span_id),
            TraceFlags::new(p.flags),
            true,
            TraceState::default(),
        )),
        None => opentelemetry::Context::new(),
    };
    builder.start_with_context(&tracer, &context).end();
    hop.to_string()
}
