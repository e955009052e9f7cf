//! The wire: the generated `loket.v1` messages, client and server, and the one place a
//! stored event becomes a `CloudEvent` message.

pub mod codec;
pub mod timestamp;

use loket_domain::SPEC_VERSION;
use loket_journal::StoredEvent;

mod generated {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("loket.v1");

    /// Descriptor set of `proto/`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loket_descriptor");
}

pub use generated::*;

impl CloudEvent {
    /// A stored event's envelope around `data`: the stored payload, or a subscriber's view
    /// of it. `time` is the publisher's, absent when it gave none.
    pub(crate) fn stored(event: StoredEvent, data: Vec<u8>) -> Self {
        CloudEvent {
            id: event.id,
            source: event.source,
            r#type: event.event_type,
            subject: event.subject,
            time: event.time_micros.map(timestamp::from_micros),
            dataschema: event.dataschema,
            datacontenttype: event.datacontenttype,
            data,
            specversion: SPEC_VERSION.to_owned(),
        }
    }
}
