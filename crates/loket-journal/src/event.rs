//! The journal's record types and the on-disk key encodings.

use std::collections::BTreeMap;

/// An event accepted by the gateway, not yet sequenced.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// The publisher's CloudEvents extension attributes (checked at intake; never one of
    /// loket's own names, never the trace context).
    pub extensions: BTreeMap<String, String>,
    /// W3C `traceparent` of the gateway's intake span: the publisher's trace id (or a new
    /// one), the intake's span id. Not part of the idempotency content: a retry is a new
    /// hop of the same event.
    pub traceparent: String,
    /// W3C `tracestate` as the publisher sent it.
    pub tracestate: String,
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
    /// Position in the journal's hash chain, which runs over accepted and rejected entries
    /// in the order the writer stored them (dense from 1).
    #[prost(uint64, tag = "14")]
    pub chain: u64,
    /// The previous chain entry's `hash` (32 zero bytes for the first entry), so that an
    /// exported entry can be checked on its own.
    #[prost(bytes = "vec", tag = "15")]
    pub prev_hash: Vec<u8>,
    /// SHA-256 over this record without this field (see [`crate::chain`]).
    #[prost(bytes = "vec", tag = "16")]
    pub hash: Vec<u8>,
    /// Non-zero when the payload was removed in place by purge record N (expired under
    /// `[retention]`, or erased): `data` is then empty and `hash` is still the one computed
    /// when the event was stored, so the chain's links stay checkable (see
    /// [`crate::retention`]). 0 while written, so it never enters the hash.
    #[prost(uint64, tag = "40")]
    pub purged_by: u64,
    /// On disk: the slot of the case key `data` is sealed with (see [`crate::keys`]); 0
    /// for a plain payload. Readers get the payload opened and 0 here. Never in the hash,
    /// which covers the plain record.
    #[prost(uint32, tag = "41")]
    pub key: u32,
    /// See [`NewEvent::extensions`]. Tags from 80 on are this record's envelope additions.
    #[prost(btree_map = "string, string", tag = "80")]
    pub extensions: BTreeMap<String, String>,
    /// See [`NewEvent::traceparent`].
    #[prost(string, tag = "81")]
    pub traceparent: String,
    /// See [`NewEvent::tracestate`].
    #[prost(string, tag = "82")]
    pub tracestate: String,
}

loket_domain::impl_envelope!(StoredEvent);

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
            chain: 0,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            purged_by: 0,
            key: 0,
            extensions: event.extensions,
            traceparent: event.traceparent,
            tracestate: event.tracestate,
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
            && self.extensions == event.extensions
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

/// A refused publish, as the gateway saw it: kept in the rejection log, never delivered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewRejection {
    /// CloudEvents `source` as sent (may differ from the caller, see `caller`).
    pub source: String,
    /// The authenticated partner that sent it.
    pub caller: String,
    /// CloudEvents `id` as sent.
    pub id: String,
    /// CloudEvents `type` as sent.
    pub event_type: String,
    /// CloudEvents `subject` as sent.
    pub subject: String,
    /// CloudEvents `time` in Unix microseconds, when given.
    pub time_micros: Option<i64>,
    /// CloudEvents `dataschema` as sent.
    pub dataschema: String,
    /// CloudEvents `datacontenttype` as sent.
    pub datacontenttype: String,
    /// The payload bytes as sent.
    pub data: Vec<u8>,
    /// Stable reason, e.g. SCHEMA_VIOLATION (the google.rpc.ErrorInfo reason).
    pub reason: String,
    /// The message the publisher got.
    pub message: String,
    /// Every failing field.
    pub violations: Vec<Violation>,
}

/// One failing field of a rejection.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Violation {
    /// JSON pointer or `@attribute`.
    #[prost(string, tag = "1")]
    pub field: String,
    /// What is wrong.
    #[prost(string, tag = "2")]
    pub description: String,
}

/// A rejection as stored in the rejection log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredRejection {
    /// Number in the rejection log, dense from 1 (separate from the accepted sequence).
    #[prost(uint64, tag = "1")]
    pub number: u64,
    /// When the gateway refused it (Unix µs).
    #[prost(int64, tag = "2")]
    pub received_at_micros: i64,
    /// See [`NewRejection::source`].
    #[prost(string, tag = "3")]
    pub source: String,
    /// See [`NewRejection::caller`].
    #[prost(string, tag = "4")]
    pub caller: String,
    /// See [`NewRejection::id`].
    #[prost(string, tag = "5")]
    pub id: String,
    /// See [`NewRejection::event_type`].
    #[prost(string, tag = "6")]
    pub event_type: String,
    /// See [`NewRejection::subject`].
    #[prost(string, tag = "7")]
    pub subject: String,
    /// See [`NewRejection::time_micros`].
    #[prost(int64, optional, tag = "8")]
    pub time_micros: Option<i64>,
    /// See [`NewRejection::dataschema`].
    #[prost(string, tag = "9")]
    pub dataschema: String,
    /// See [`NewRejection::datacontenttype`].
    #[prost(string, tag = "10")]
    pub datacontenttype: String,
    /// See [`NewRejection::data`].
    #[prost(bytes = "vec", tag = "11")]
    pub data: Vec<u8>,
    /// See [`NewRejection::reason`].
    #[prost(string, tag = "12")]
    pub reason: String,
    /// See [`NewRejection::message`].
    #[prost(string, tag = "13")]
    pub message: String,
    /// See [`NewRejection::violations`].
    #[prost(message, repeated, tag = "14")]
    pub violations: Vec<Violation>,
    /// See [`StoredEvent::chain`].
    #[prost(uint64, tag = "15")]
    pub chain: u64,
    /// See [`StoredEvent::prev_hash`].
    #[prost(bytes = "vec", tag = "16")]
    pub prev_hash: Vec<u8>,
    /// See [`StoredEvent::hash`].
    #[prost(bytes = "vec", tag = "17")]
    pub hash: Vec<u8>,
    /// Size in bytes of the payload as sent; `data` holds at most the journal's
    /// `rejection_payload_bytes` of it (0 in records written before the cap).
    #[prost(uint64, tag = "40")]
    pub data_size: u64,
    /// SHA-256 of the whole payload as sent, so a kept prefix can still be matched with
    /// the publisher's copy (empty in records written before the cap).
    #[prost(bytes = "vec", tag = "41")]
    pub data_sha256: Vec<u8>,
    /// See [`StoredEvent::key`].
    #[prost(uint32, tag = "42")]
    pub key: u32,
    /// See [`StoredEvent::purged_by`]: the excerpt was erased with its case.
    #[prost(uint64, tag = "43")]
    pub purged_by: u64,
    /// As stored, for a rejection with a subject: `message` and `violations` as a
    /// [`RejectionTexts`] sealed with the case's key (those fields then empty), since a
    /// violation message may quote what the payload says (a V-number): erasing the case
    /// takes them with the excerpt. Empty in a record as read and as hashed.
    #[prost(bytes = "vec", tag = "100")]
    pub sealed_texts: Vec<u8>,
}

/// The texts of a rejection, sealed together (see [`StoredRejection::sealed_texts`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RejectionTexts {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(message, repeated, tag = "2")]
    pub violations: Vec<Violation>,
}

impl StoredRejection {
    /// The record of `r`, its payload cut to `payload_cap` bytes (size and hash of the
    /// whole kept beside it): a refused publish must not cost what an accepted one does.
    pub(crate) fn from_new(r: NewRejection, number: u64, received_at_micros: i64, payload_cap: usize) -> Self {
        use sha2::Digest;
        let data_size = r.data.len() as u64;
        let data_sha256 = sha2::Sha256::digest(&r.data).to_vec();
        let mut data = r.data;
        data.truncate(payload_cap);
        StoredRejection {
            number,
            received_at_micros,
            source: r.source,
            caller: r.caller,
            id: r.id,
            event_type: r.event_type,
            subject: r.subject,
            time_micros: r.time_micros,
            dataschema: r.dataschema,
            datacontenttype: r.datacontenttype,
            data,
            reason: r.reason,
            message: r.message,
            violations: r.violations,
            chain: 0,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            data_size,
            data_sha256,
            key: 0,
            purged_by: 0,
            sealed_texts: Vec::new(),
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
