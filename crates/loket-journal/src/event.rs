//! The journal's record types and the on-disk key encodings.

/// An event accepted by the gateway, not yet sequenced.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// CloudEvents `source`: the publishing partner.
    pub source: String,
    /// CloudEvents `id`, unique per source; the idempotency key together with `source`.
    pub id: String,
    /// CloudEvents `type`.
    pub event_type: String,
    /// Version of the schema the data was validated against.
    pub schema_version: u32,
    /// CloudEvents `dataschema`.
    pub dataschema: String,
    /// CloudEvents `subject`: the case.
    pub subject: String,
    /// CloudEvents `time` in Unix microseconds, when the publisher gave one.
    pub time_micros: Option<i64>,
    /// CloudEvents `datacontenttype`.
    pub datacontenttype: String,
    /// Canonical JSON bytes of the payload.
    pub data: Vec<u8>,
    /// Completeness score computed by the gateway (not part of the idempotency content).
    pub completeness: f64,
    /// Expected fields that were missing (not part of the idempotency content).
    pub missing_expected: Vec<String>,
}

/// An event as stored in the journal.
///
/// A hand-derived prost message (no .proto file) so that later fields can be added under
/// new tags and old records still decode.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEvent {
    /// Gateway-wide sequence number, dense from 1.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// When the gateway accepted the event (Unix µs), non-decreasing along the sequence.
    #[prost(int64, tag = "2")]
    pub received_at_micros: i64,
    /// See [`NewEvent::source`].
    #[prost(string, tag = "3")]
    pub source: String,
    /// See [`NewEvent::id`].
    #[prost(string, tag = "4")]
    pub id: String,
    /// See [`NewEvent::event_type`].
    #[prost(string, tag = "5")]
    pub event_type: String,
    /// See [`NewEvent::schema_version`].
    #[prost(uint32, tag = "6")]
    pub schema_version: u32,
    /// See [`NewEvent::dataschema`].
    #[prost(string, tag = "7")]
    pub dataschema: String,
    /// See [`NewEvent::subject`].
    #[prost(string, tag = "8")]
    pub subject: String,
    /// See [`NewEvent::time_micros`].
    #[prost(int64, optional, tag = "9")]
    pub time_micros: Option<i64>,
    /// See [`NewEvent::datacontenttype`].
    #[prost(string, tag = "10")]
    pub datacontenttype: String,
    /// See [`NewEvent::data`].
    #[prost(bytes = "vec", tag = "11")]
    pub data: Vec<u8>,
    /// See [`NewEvent::completeness`].
    #[prost(double, tag = "12")]
    pub completeness: f64,
    /// See [`NewEvent::missing_expected`].
    #[prost(string, repeated, tag = "13")]
    pub missing_expected: Vec<String>,
}

impl StoredEvent {
    pub(crate) fn from_new(event: NewEvent, sequence: u64, received_at_micros: i64) -> Self {
        StoredEvent {
            sequence,
            received_at_micros,
            source: event.source,
            id: event.id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            dataschema: event.dataschema,
            subject: event.subject,
            time_micros: event.time_micros,
            datacontenttype: event.datacontenttype,
            data: event.data,
            completeness: event.completeness,
            missing_expected: event.missing_expected,
        }
    }

    /// Whether `event` is a faithful retry of this one: the fields the publisher controls.
    /// Completeness is the gateway's own verdict, so a re-scored retry is still the same event.
    pub(crate) fn same_content(&self, event: &NewEvent) -> bool {
        self.event_type == event.event_type
            && self.schema_version == event.schema_version
            && self.dataschema == event.dataschema
            && self.subject == event.subject
            && self.time_micros == event.time_micros
            && self.datacontenttype == event.datacontenttype
            && self.data == event.data
    }

    pub(crate) fn appended(&self, duplicate: bool) -> Appended {
        Appended {
            sequence: self.sequence,
            received_at_micros: self.received_at_micros,
            duplicate,
            completeness: self.completeness,
            missing_expected: self.missing_expected.clone(),
        }
    }
}

/// The outcome of a successful [`Journal::submit`](crate::Journal::submit).
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The event's sequence (for a duplicate: the original's).
    pub sequence: u64,
    /// When the event was accepted (for a duplicate: the original's).
    pub received_at_micros: i64,
    /// True when an event with the same (source, id) and content was already stored.
    pub duplicate: bool,
    /// Completeness as stored (for a duplicate: the original's).
    pub completeness: f64,
    /// Missing expected fields as stored (for a duplicate: the original's).
    pub missing_expected: Vec<String>,
}

/// Big-endian so that sled's byte order is the numeric order and range scans are in sequence.
pub(crate) fn seq_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Length-prefixed so that no (source, id) pair can collide with another whatever bytes
/// the strings contain.
pub(crate) fn id_key_into(buf: &mut Vec<u8>, source: &str, id: &str) {
    buf.clear();
    buf.extend_from_slice(&(source.len() as u32).to_be_bytes());
    buf.extend_from_slice(source.as_bytes());
    buf.extend_from_slice(id.as_bytes());
}

/// Cursor key, length-prefixed like [`id_key_into`].
pub(crate) fn cursor_key(partner: &str, name: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + partner.len() + name.len());
    id_key_into(&mut buf, partner, name);
    buf
}
