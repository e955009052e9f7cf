//! The CloudEvents Kafka protocol binding, binary mode: the payload is the record value,
//! attributes are `ce_`-prefixed headers, `datacontenttype` is `content-type`, and the key
//! is the case (the subject), so one case stays on one partition and in order.
//!
//! The attributes follow the NL GOV profile (`loket_domain::profile`): `ce_type` is the
//! reverse-DNS type, `ce_source` the partner's OIN URN where configured, `ce_time` the
//! publisher's time and absent when it gave none.
//!
//! loket's extension attributes (lowercase alphanumeric, as CloudEvents requires):
//! `ce_sequence` (the publishing gateway's journal sequence, 20 zero-padded digits, so it
//! sorts as a string) with `ce_sequencetype` (`DecimalU64`), `ce_completeness` (0..1),
//! `ce_missingexpected` and `ce_redacted` (comma-separated JSON pointers, empty when none;
//! completeness and missing expected fields count only the expected fields the topic's
//! view shows, so a partner's topic says nothing about fields hidden from it),
//! `ce_receivedat` (RFC 3339, when the gateway stored the event), and on a delivery topic
//! `ce_released` = `true` on an event that was withheld for lack of consent and is
//! delivered now, after the consent that covers the partner (absent otherwise).
//! `ce_traceparent` continues the event's trace with the record's own span id, and
//! `ce_tracestate` passes the publisher's on (the CloudEvents distributed-tracing
//! extension). Every other `ce_` header is one of the publisher's extension attributes.

use std::collections::BTreeMap;

use loket_domain::profile::{parse_sequence, sequence_text, SEQUENCE_TYPE};
use loket_domain::Profile;
use loket_journal::StoredEvent;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{RecordKey, TAG_HEADER};
use crate::Error;

pub const SPEC_VERSION: &str = "1.0";

/// One event as it travels through Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEventRecord {
    pub id: String,
    pub source: String,
    /// The profile's reverse-DNS type.
    pub event_type: String,
    /// The case's V-number; also the record key.
    pub subject: String,
    /// The publisher's `time`, when it gave one.
    pub time_micros: Option<i64>,
    pub dataschema: String,
    pub content_type: String,
    pub sequence: u64,
    pub completeness: f64,
    pub missing_expected: Vec<String>,
    pub redacted: Vec<String>,
    pub received_at_micros: i64,
    /// Withheld earlier and released by a later consent (see the module doc).
    pub released: bool,
    /// The event was erased: produced with a null value (and `ce_tombstone: true`), so
    /// a compacted topic drops what it holds under the key.
    pub tombstone: bool,
    /// The event's trace, continued by this record (see the module doc); empty only on
    /// records of gateways that kept no trace.
    pub traceparent: String,
    pub tracestate: String,
    /// The publisher's extension attributes.
    pub extensions: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// Header names of the attributes loket sets; any other `ce_` header is an extension.
const OWN_HEADERS: &[&str] = &[
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_subject",
    "ce_time",
    "ce_dataschema",
    "ce_sequence",
    "ce_sequencetype",
    "ce_completeness",
    "ce_missingexpected",
    "ce_redacted",
    "ce_receivedat",
    "ce_released",
    "ce_tombstone",
    "ce_traceparent",
    "ce_tracestate",
];

impl CloudEventRecord {
    /// The record for `event` with `payload` (the full data, or a partner's view of it), in
    /// the `profile`'s names, carrying `traceparent` (this record's hop of the trace).
    pub fn new(
        event: &StoredEvent,
        payload: Vec<u8>,
        redacted: Vec<String>,
        profile: &Profile,
        traceparent: String,
    ) -> Self {
        CloudEventRecord {
            id: event.id.clone(),
            source: profile.source(&event.source),
            event_type: profile.event_type(&event.event_type),
            subject: event.subject.clone(),
            time_micros: event.time_micros,
            dataschema: event.dataschema.clone(),
            content_type: event.datacontenttype.clone(),
            sequence: event.sequence,
            completeness: event.completeness,
            missing_expected: event.missing_expected.clone(),
            redacted,
            received_at_micros: event.received_at_micros,
            released: false,
            tombstone: false,
            traceparent,
            tracestate: event.tracestate.clone(),
            extensions: event.extensions.clone(),
            data: payload,
        }
    }

    /// Marks the record as the tombstone of an erased event (no data).
    pub fn tombstone(mut self) -> Self {
        self.tombstone = true;
        self.data = Vec::new();
        self
    }

    /// The value to produce: none for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        (!self.tombstone).then_some(&self.data[..])
    }

    /// Marks the record as a released event.
    pub fn released(mut self) -> Self {
        self.released = true;
        self
    }

    /// The headers, in a fixed order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(&str, String)> = vec![
            ("ce_specversion", SPEC_VERSION.to_owned()),
            ("ce_id", self.id.clone()),
            ("ce_source", self.source.clone()),
            ("ce_type", self.event_type.clone()),
            ("ce_subject", self.subject.clone()),
        ];
        if let Some(time) = self.time_micros {
            headers.push(("ce_time", rfc3339(time)));
        }
        headers.extend([
            ("ce_dataschema", self.dataschema.clone()),
            ("content-type", self.content_type.clone()),
            ("ce_sequence", sequence_text(self.sequence)),
            ("ce_sequencetype", SEQUENCE_TYPE.to_owned()),
            ("ce_completeness", self.completeness.to_string()),
            ("ce_missingexpected", self.missing_expected.join(",")),
            ("ce_redacted", self.redacted.join(",")),
            ("ce_receivedat", rfc3339(self.received_at_micros)),
        ]);
        if self.released {
            headers.push(("ce_released", "true".to_owned()));
        }
        if self.tombstone {
            headers.push(("ce_tombstone", "true".to_owned()));
        }
        if !self.traceparent.is_empty() {
            headers.push(("ce_traceparent", self.traceparent.clone()));
        }
        if !self.tracestate.is_empty() {
            headers.push(("ce_tracestate", self.tracestate.clone()));
        }
        let own = headers.into_iter().map(|(k, v)| (k.to_owned(), v));
        own.chain(self.extensions.iter().map(|(k, v)| (format!("ce_{k}"), v.clone()))).collect()
    }

    pub fn owned_headers(&self) -> OwnedHeaders {
        self.headers().iter().fold(OwnedHeaders::new_with_capacity(15), |h, (key, value)| {
            h.insert(Header { key, value: Some(value.as_bytes()) })
        })
    }

    /// The headers with the authentication tag of this record on `topic` (the key is the
    /// subject, the value the data; see [`crate::auth`]).
    pub fn tagged_headers(&self, topic: &str, key: &RecordKey) -> OwnedHeaders {
        let headers = self.headers();
        let tag = key.tag(
            topic,
            Some(self.subject.as_bytes()),
            self.value(),
            headers.iter().map(|(name, value)| (name.as_str(), Some(value.as_bytes()))),
        );
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain([(TAG_HEADER, tag.as_str())])
            .fold(OwnedHeaders::new_with_capacity(15), |h, (key, value)| {
                h.insert(Header { key, value: Some(value.as_bytes()) })
            })
    }

    /// Reads a record back; every header above must be present, except `ce_time`,
    /// `ce_released`, `ce_tombstone` and the trace context.
    pub fn from_message(message: &impl Message) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            reason,
        };
        let mut found: Vec<(String, String)> = Vec::new();
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                found.push((h.key.to_owned(), value));
            }
        }
        let get = |key: &str| {
            found
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| malformed(format!("header {key} is missing")))
        };
        let list =
            |value: String| -> Vec<String> { value.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect() };
        let time = |key: &str, text: String| -> Result<i64, Error> {
            parse_rfc3339(&text).ok_or_else(|| malformed(format!("header {key} is not an RFC 3339 time: {text:?}")))
        };
        let optional = |key: &str| found.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let spec = get("ce_specversion")?;
        if spec != SPEC_VERSION {
            return Err(malformed(format!("ce_specversion is {spec:?}, not {SPEC_VERSION}")));
        }
        let sequence = get("ce_sequence")?;
        let completeness = get("ce_completeness")?;
        Ok(CloudEventRecord {
            id: get("ce_id")?,
            source: get("ce_source")?,
            event_type: get("ce_type")?,
            subject: get("ce_subject")?,
            time_micros: optional("ce_time").map(|t| time("ce_time", t)).transpose()?,
            dataschema: get("ce_dataschema")?,
            content_type: get("content-type")?,
            sequence: parse_sequence(&sequence)
                .ok_or_else(|| malformed(format!("ce_sequence {sequence:?} is not a number")))?,
            completeness: completeness
                .parse()
                .map_err(|_| malformed(format!("ce_completeness {completeness:?} is not a number")))?,
            missing_expected: list(get("ce_missingexpected")?),
            redacted: list(get("ce_redacted")?),
            received_at_micros: time("ce_receivedat", get("ce_receivedat")?)?,
            released: found.iter().any(|(k, v)| k == "ce_released" && v == "true"),
            tombstone: found.iter().any(|(k, v)| k == "ce_tombstone" && v == "true"),
            traceparent: optional("ce_traceparent").unwrap_or_default(),
            tracestate: optional("ce_tracestate").unwrap_or_default(),
            extensions: found
                .iter()
                .filter(|(k, _)| !OWN_HEADERS.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.strip_prefix("ce_")?.to_owned(), v.clone())))
                .collect(),
            data: message.payload().unwrap_or_default().to_vec(),
        })
    }
}

fn rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        // Stored times were checked at intake (years 1 to 9999), so this is unreachable.
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn record(redacted: Vec<String>) -> CloudEventRecord {
        CloudEventRecord::new(&stored(), b"{}".to_vec(), redacted, &Profile::default(), TRACE.into())
    }

    fn stored() -> StoredEvent {
        StoredEvent {
            sequence: 42,
            received_at_micros: 1_700_000_000_123_456,
            source: "dvo".into(),
            id: "t-1".into(),
            event_type: "transport-status".into(),
            schema_version: 1,
            dataschema: "urn:loket:schema:transport-status:v1".into(),
            subject: "1234567890".into(),
            time_micros: None,
            datacontenttype: "application/json".into(),
            data: b"{\"a\":1}".to_vec(),
            completeness: 0.75,
            missing_expected: vec!["/plannedAt".into(), "/vehicle".into()],
            extensions: [("dataref".to_owned(), "https://dvo.example/t-1".to_owned())].into(),
            ..StoredEvent::default()
        }
    }

    /// `record` as a consumer receives it.
    fn message(record: &CloudEventRecord) -> OwnedMessage {
        OwnedMessage::new(
            Some(record.data.clone()),
            Some(record.subject.clone().into_bytes()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(record.owned_headers()),
        )
    }

    #[test]
    fn headers_round_trip_through_a_kafka_message() {
        let record = record(vec!["/medical".into()]);
        assert_eq!(CloudEventRecord::from_message(&message(&record)).unwrap(), record);
        assert!(!record.headers().iter().any(|(k, _)| k == "ce_released"));
        let released = record.clone().released();
        assert_eq!(CloudEventRecord::from_message(&message(&released)).unwrap(), released);
        let headers = record.headers();
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        // Without a publisher's time there is no ce_time: receivedat is the gateway's.
        assert_eq!(header("ce_time"), None);
        assert_eq!(header("ce_receivedat"), Some("2023-11-14T22:13:20.123456Z"));
        assert_eq!(header("ce_type"), Some("nl.vreemdelingenketen.transport-status"));
        assert_eq!(header("ce_sequence"), Some("00000000000000000042"));
        assert_eq!(header("ce_sequencetype"), Some("DecimalU64"));
        assert_eq!(header("ce_dataref"), Some("https://dvo.example/t-1"));
        assert_eq!(header("ce_traceparent"), Some(TRACE));
        assert!(headers.iter().all(|(k, _)| k.starts_with("ce_") || k == "content-type"));
    }

    #[test]
    fn tagged_headers_verify_on_their_topic_only() {
        let key = RecordKey::from_file_contents(&[3; 32]).unwrap();
        let record = record(vec![]);
        let on = |topic: &str, headers| {
            OwnedMessage::new(
                Some(record.data.clone()),
                Some(record.subject.clone().into_bytes()),
                topic.into(),
                Timestamp::NotAvailable,
                0,
                7,
                Some(headers),
            )
        };
        let produced = on("loket.delivery.kmar", record.tagged_headers("loket.delivery.kmar", &key));
        assert_eq!(key.verify(&produced), Ok(()));
        assert_eq!(CloudEventRecord::from_message(&produced).unwrap(), record, "the tag is no attribute");
        let elsewhere = on("loket.delivery.dji", record.tagged_headers("loket.delivery.kmar", &key));
        assert_eq!(key.verify(&elsewhere), Err(crate::TagProblem::Mismatch));
        assert_eq!(key.verify(&message(&record)), Err(crate::TagProblem::Missing));
    }

    #[test]
    fn a_record_without_loket_headers_is_named_malformed() {
        let message = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 3, 9, None);
        let err = CloudEventRecord::from_message(&message).unwrap_err().to_string();
        assert!(err.contains("t/3@9") && err.contains("ce_specversion"), "{err}");
    }
}
