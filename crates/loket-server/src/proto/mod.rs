//! The wire: the generated `loket.v1` messages, client and server, and the one place a
//! stored event becomes a `CloudEvent` message.

pub mod codec;
pub mod timestamp;

use std::collections::HashMap;

use loket_domain::profile::{sequence_text, SEQUENCE_TYPE, TRACEPARENT, TRACESTATE};
use loket_domain::time::rfc3339;
use loket_domain::{Profile, SPEC_VERSION};
use loket_journal::StoredEvent;

mod generated {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("loket.v1");

    /// Descriptor set of `proto/`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loket_descriptor");
}

pub use generated::*;

impl CloudEvent {
    /// A stored event's envelope around `data` (the stored payload, or a subscriber's view
    /// of it) in the profile's names: reverse-DNS type, source URN, `time` the publisher's
    /// and absent when it gave none. Extensions: the publisher's, then loket's `sequence`,
    /// `sequencetype` and `receivedat`, and `traceparent` (this hop's: `traceparent`, or
    /// the stored intake's when empty, as an export shows it) with the publisher's
    /// `tracestate`.
    pub(crate) fn stored(event: StoredEvent, data: Vec<u8>, profile: &Profile, traceparent: String) -> Self {
        let traceparent = if traceparent.is_empty() { event.traceparent } else { traceparent };
        let extensions =
            extensions(event.extensions, event.sequence, event.received_at_micros, traceparent, event.tracestate);
        CloudEvent {
            id: event.id,
            source: profile.source(&event.source),
            r#type: profile.event_type(&event.event_type),
            subject: event.subject,
            time: event.time_micros.map(timestamp::from_micros),
            dataschema: event.dataschema,
            datacontenttype: event.datacontenttype,
            data,
            specversion: SPEC_VERSION.to_owned(),
            extensions,
        }
    }
}

/// A delivered event's extension attributes: the publisher's, loket's `sequence`,
/// `sequencetype` and `receivedat`, and the trace context (when there is one).
pub(crate) fn extensions(
    publisher: impl IntoIterator<Item = (String, String)>,
    sequence: u64,
    received_at_micros: i64,
    traceparent: String,
    tracestate: String,
) -> HashMap<String, String> {
    let mut extensions: HashMap<String, String> = publisher.into_iter().collect();
    extensions.insert("sequence".into(), sequence_text(sequence));
    extensions.insert("sequencetype".into(), SEQUENCE_TYPE.into());
    if let Some(received) = rfc3339(received_at_micros) {
        extensions.insert("receivedat".into(), received);
    }
    for (name, value) in [(TRACEPARENT, traceparent), (TRACESTATE, tracestate)] {
        if !value.is_empty() {
            extensions.insert(name.into(), value);
        }
    }
    extensions
}
