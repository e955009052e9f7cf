//! The message-log file format that `export` writes, `gen` generates and `replay` and
//! `audit verify --log` read: NDJSON, one structured-mode CloudEvent per line, with the
//! gateway's outcome as extension attributes (CloudEvents allows strings, integers and
//! booleans there, so lists travel as strings). Field order is fixed, so equal logs are
//! byte-identical. An exported accepted line is in the NL GOV profile's names: reverse-DNS
//! `type`, `source` URN (the partner id in `caller`), `sequence` as 20 zero-padded digits
//! with `sequencetype`, the trace context and the publisher's extension attributes last.

use std::collections::BTreeMap;

use base64::Engine;
use loket_domain::profile::{check_extensions, RESERVED_ATTRIBUTES, SEQUENCE_TYPE, TRACEPARENT, TRACESTATE};
use loket_journal::{StoredEvent, StoredRejection, Violation};
use loket_server::proto::{CloudEvent, ExportEntry, Outcome};
use loket_server::timestamp::to_micros;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::timestamp::{parse_rfc3339, rfc3339};
use crate::Error;

pub const ACCEPTED: &str = "accepted";
pub const REJECTED: &str = "rejected";

/// One line of a message log. Members other than these are the publisher's extension
/// attributes ([`LogLine::extensions`]), so unknown members are not refused.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataschema: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacontenttype: String,
    /// The payload exactly as stored, when it is one line of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// Any other payload (a rejected one may be anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// "accepted" or "rejected".
    pub outcome: String,
    /// Accepted: the journal sequence, written as 20 zero-padded digits (read as a number
    /// too, as older logs have it).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "padded")]
    pub sequence: Option<u64>,
    /// `DecimalU64` beside a sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencetype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<u64>,
    pub receivedat: String,
    /// Accepted: the score as a decimal string (exact: Rust prints the shortest
    /// representation that reads back to the same number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<String>,
    /// Accepted: the missing expected fields, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missingexpected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemaversion: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Rejected: a JSON array of {"field","description"} as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<String>,
    /// Rejected: the partner that sent it (replay publishes as this partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevhash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// A tester's export: V-numbers and free text are keyed pseudonyms (and the line
    /// carries no hashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonymised: Option<bool>,
    /// The payload was left out (medical data no recipient was given); replay skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<bool>,
    /// Rejected: the size of the payload as sent (`data` holds at most the gateway's
    /// `rejection_payload_bytes` of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasize: Option<u64>,
    /// Rejected: SHA-256 of the whole payload as sent, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasha256: Option<String>,
    /// The payload was removed (expired or erased) by this purge record; the line keeps
    /// the entry's hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purgedby: Option<u64>,
    /// Accepted: W3C trace context as stored (the gateway's intake span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The publisher's extension attributes, written after every other member.
    #[serde(skip)]
    pub extensions: BTreeMap<String, String>,
}

/// `sequence` as the profile's string-sortable text.
mod padded;

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ViolationJson {
    pub field: String,
    pub description: String,
}

/// Payload bytes as `data` when they survive a round trip through the line unchanged,
/// otherwise as `data_base64`.
pub fn encode_data(bytes: &[u8]) -> (Option<Box<RawValue>>, Option<String>) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let one_line = !text.contains(['\n', '\r']) && text.trim() == text && !text.is_empty();
        if one_line {
            if let Ok(raw) = RawValue::from_string(text.to_owned()) {
                return (Some(raw), None);
            }
        }
    }
    (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn join_violations(violations: &[ViolationJson]) -> String {
    serde_json::to_string(violations).expect("strings serialise")
}

impl LogLine {
    pub fn from_export(entry: ExportEntry) -> LogLine {
        let mut event = entry.event.unwrap_or_default();
        let mut take = |name: &str| event.extensions.remove(name).filter(|v| !v.is_empty());
        let (traceparent, tracestate) = (take(TRACEPARENT), take(TRACESTATE));
        // Written as members of their own.
        for own in ["sequence", "sequencetype", "receivedat"] {
            take(own);
        }
        let (data, data_base64) = encode_data(&event.data);
        let accepted = entry.outcome == Outcome::Accepted as i32;
        let hex_opt = |b: &[u8]| (!b.is_empty()).then(|| hex::encode(b));
        LogLine {
            specversion: event.specversion,
            id: event.id,
            source: event.source,
            event_type: event.r#type,
            subject: event.subject,
            time: event.time.as_ref().map(rfc3339),
            dataschema: event.dataschema,
            datacontenttype: event.datacontenttype,
            data,
            data_base64,
            outcome: if accepted { ACCEPTED } else { REJECTED }.to_owned(),
            sequence: accepted.then_some(entry.sequence),
            sequencetype: accepted.then(|| SEQUENCE_TYPE.to_owned()),
            rejection: (!accepted).then_some(entry.rejection),
            receivedat: entry.received_at.as_ref().map(rfc3339).unwrap_or_default(),
            completeness: accepted.then(|| format!("{}", entry.completeness)),
            missingexpected: accepted.then(|| entry.missing_expected.join(",")),
            schemaversion: accepted.then_some(entry.schema_version),
            reason: (!accepted).then_some(entry.reason),
            message: (!accepted).then_some(entry.message),
            violations: (!accepted).then(|| {
                join_violations(
                    &entry
                        .violations
                        .into_iter()
                        .map(|v| ViolationJson { field: v.field, description: v.description })
                        .collect::<Vec<_>>(),
                )
            }),
            caller: Some(entry.caller).filter(|c| !c.is_empty()),
            chain: (entry.chain != 0).then_some(entry.chain),
            prevhash: hex_opt(&entry.prev_hash),
            hash: hex_opt(&entry.hash),
            pseudonymised: entry.pseudonymised.then_some(true),
            omitted: entry.omitted.then_some(true),
            datasize: (!accepted && entry.data_size != 0).then_some(entry.data_size),
            datasha256: (!accepted).then(|| hex_opt(&entry.data_sha256)).flatten(),
            purgedby: (entry.purged_by != 0).then_some(entry.purged_by),
            traceparent,
            tracestate,
            extensions: event.extensions.into_iter().collect(),
        }
    }

    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string(self).expect("a log line always serialises");
        // Appended to the object text, so `data` stays byte for byte as stored.
        json.pop();
        for (name, value) in &self.extensions {
            let value = serde_json::to_string(value).expect("a string serialises");
            json.push_str(&format!(",{}:{value}", serde_json::to_string(name).expect("a string serialises")));
        }
        json.push('}');
        json
    }

    pub fn parse(text: &str) -> Result<LogLine, Error> {
        let mut line: LogLine = serde_json::from_str(text).map_err(Error::Malformed)?;
        let members: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(Error::Malformed)?;
        for (name, value) in members {
            let own =
                RESERVED_ATTRIBUTES.contains(&name.as_str()) || [TRACEPARENT, TRACESTATE].contains(&name.as_str());
            if !own {
                let value: String = serde_json::from_str(value.get())
                    .map_err(|_| Error::Extension { name: name.clone(), reason: "is not a string".into() })?;
                line.extensions.insert(name, value);
            }
        }
        let extensions = line.extensions.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Some(problem) = check_extensions(extensions).into_iter().next() {
            let name = problem.field.trim_start_matches("@extensions.").to_owned();
            return Err(Error::Extension { name, reason: problem.description });
        }
        if line.outcome != ACCEPTED && line.outcome != REJECTED {
            return Err(Error::Outcome(line.outcome));
        }
        if line.data.is_some() && line.data_base64.is_some() {
            return Err(Error::DataTwice);
        }
        if line.id.is_empty() || line.source.is_empty() {
            return Err(Error::NoIdOrSource);
        }
        line.received_micros()?;
        if let Some(t) = &line.time {
            parse_rfc3339(t).ok_or_else(|| Error::NotRfc3339 { attribute: "time", value: t.clone() })?;
        }
        Ok(line)
    }

    pub fn accepted(&self) -> bool {
        self.outcome == ACCEPTED
    }

    /// Whether the payload was left out of the export (nothing to replay).
    pub fn is_omitted(&self) -> bool {
        self.omitted == Some(true)
    }

    pub fn data_bytes(&self) -> Result<Vec<u8>, Error> {
        match (&self.data, &self.data_base64) {
            (Some(raw), _) => Ok(raw.get().as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).map_err(Error::Base64),
            (None, None) => Ok(Vec::new()),
        }
    }

    pub fn received_micros(&self) -> Result<i64, Error> {
        parse_rfc3339(&self.receivedat)
            .and_then(|t| to_micros(&t))
            .ok_or_else(|| Error::NotRfc3339 { attribute: "receivedat", value: self.receivedat.clone() })
    }

    fn time_micros(&self) -> Result<Option<i64>, Error> {
        match &self.time {
            None => Ok(None),
            Some(t) => {
                Ok(Some(parse_rfc3339(t).and_then(|t| to_micros(&t)).ok_or_else(|| Error::TimeOutOfRange(t.clone()))?))
            }
        }
    }

    /// The partner that published it: whoever the gateway authenticated.
    pub fn publisher(&self) -> &str {
        self.caller.as_deref().filter(|c| !c.is_empty()).unwrap_or(&self.source)
    }

    pub fn cloud_event(&self) -> Result<CloudEvent, Error> {
        Ok(CloudEvent {
            id: self.id.clone(),
            source: self.source.clone(),
            r#type: self.event_type.clone(),
            subject: self.subject.clone(),
            time: self.time.as_deref().and_then(parse_rfc3339),
            dataschema: self.dataschema.clone(),
            datacontenttype: self.datacontenttype.clone(),
            data: self.data_bytes()?,
            specversion: self.specversion.clone(),
            extensions: self.extensions_with_trace(),
        })
    }

    /// The publisher's extensions and, as the event's own, its trace context: a replayed
    /// event continues the recorded trace.
    fn extensions_with_trace(&self) -> std::collections::HashMap<String, String> {
        let trace = [(TRACEPARENT, &self.traceparent), (TRACESTATE, &self.tracestate)];
        let trace = trace.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)));
        self.extensions.clone().into_iter().chain(trace).collect()
    }

    /// The type as the journal stores it: a reverse-DNS name without its prefix (event
    /// types themselves contain no dot), a short name as it is.
    pub fn short_type(&self) -> &str {
        self.event_type.rsplit('.').next().unwrap_or_default()
    }

    pub fn missing_expected(&self) -> Vec<String> {
        match self.missingexpected.as_deref() {
            None | Some("") => Vec::new(),
            Some(m) => m.split(',').map(str::to_owned).collect(),
        }
    }

    pub fn completeness_value(&self) -> Result<Option<f64>, Error> {
        self.completeness
            .as_deref()
            .map(|c| c.parse::<f64>().map_err(|source| Error::Completeness { value: c.to_owned(), source }))
            .transpose()
    }

    pub fn violation_list(&self) -> Result<Vec<ViolationJson>, Error> {
        match self.violations.as_deref() {
            None | Some("") => Ok(Vec::new()),
            Some(v) => serde_json::from_str(v).map_err(Error::Violations),
        }
    }

    fn hash_bytes(value: &Option<String>, attribute: &'static str) -> Result<Vec<u8>, Error> {
        match value {
            None => Ok(Vec::new()),
            Some(h) => hex::decode(h).map_err(|source| Error::Hex { attribute, source }),
        }
    }

    /// The journal record this line was exported from, for checking its hash.
    pub fn stored_event(&self) -> Result<StoredEvent, Error> {
        Ok(StoredEvent {
            sequence: self.sequence.ok_or(Error::NoSequence)?,
            received_at_micros: self.received_micros()?,
            source: self.publisher().to_owned(),
            id: self.id.clone(),
            event_type: self.short_type().to_owned(),
            schema_version: self.schemaversion.unwrap_or_default(),
            dataschema: self.dataschema.clone(),
            subject: self.subject.clone(),
            time_micros: self.time_micros()?,
            datacontenttype: self.datacontenttype.clone(),
            data: self.data_bytes()?,
            completeness: self.completeness_value()?.unwrap_or_default(),
            missing_expected: self.missing_expected(),
            chain: self.chain.unwrap_or_default(),
            prev_hash: Self::hash_bytes(&self.prevhash, "prevhash")?,
            hash: Self::hash_bytes(&self.hash, "hash")?,
            purged_by: self.purgedby.unwrap_or_default(),
            key: 0,
            extensions: self.extensions.clone(),
            traceparent: self.traceparent.clone().unwrap_or_default(),
            tracestate: self.tracestate.clone().unwrap_or_default(),
        })
    }

    /// The rejection record this line was exported from, for checking its hash.
    pub fn stored_rejection(&self) -> Result<StoredRejection, Error> {
        Ok(StoredRejection {
            number: self.rejection.ok_or(Error::NoRejectionNumber)?,
            received_at_micros: self.received_micros()?,
            source: self.source.clone(),
            caller: self.caller.clone().unwrap_or_default(),
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            subject: self.subject.clone(),
            time_micros: self.time_micros()?,
            dataschema: self.dataschema.clone(),
            datacontenttype: self.datacontenttype.clone(),
            data: self.data_bytes()?,
            reason: self.reason.clone().unwrap_or_default(),
            message: self.message.clone().unwrap_or_default(),
            violations: self
                .violation_list()?
                .into_iter()
                .map(|v| Violation { field: v.field, description: v.description })
                .collect(),
            chain: self.chain.unwrap_or_default(),
            prev_hash: Self::hash_bytes(&self.prevhash, "prevhash")?,
            hash: Self::hash_bytes(&self.hash, "hash")?,
            data_size: self.datasize.unwrap_or_default(),
            data_sha256: Self::hash_bytes(&self.datasha256, "datasha256")?,
            key: 0,
            purged_by: self.purgedby.unwrap_or_default(),
            sealed_texts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, GenOptions};

    #[test]
    fn a_generated_log_reads_back_line_by_line() {
        let options = GenOptions {
            seed: 3,
            cases: 4,
            missing_rate: 0.3,
            invalid_rate: 0.3,
            start: 1_767_600_000,
            first_case: None,
            gaps: crate::Gaps::default(),
        };
        let mut out = Vec::new();
        let count = generate(&options, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count() as u64, count.events);
        for line in text.lines() {
            let parsed = LogLine::parse(line).unwrap();
            assert_eq!(parsed.to_json(), line, "a line writes back byte for byte");
            parsed.cloud_event().unwrap();
            if parsed.accepted() {
                assert!(parsed.completeness_value().unwrap().is_some());
            } else {
                assert!(!parsed.violation_list().unwrap().is_empty());
            }
        }
    }

    #[test]
    fn a_refused_line_says_which_attribute_is_wrong() {
        let line = |extra: &str| {
            format!(r#"{{"specversion":"1.0","id":"a","source":"dvo","type":"t","outcome":"accepted",{extra}}}"#)
        };
        let err = |extra: &str| LogLine::parse(&line(extra)).unwrap_err().to_string();
        assert_eq!(err(r#""receivedat":"yesterday""#), r#"receivedat "yesterday" is not an RFC 3339 time"#);
        assert_eq!(
            err(r#""receivedat":"2026-01-05T08:00:00Z","time":"noon""#),
            r#"time "noon" is not an RFC 3339 time"#
        );
        // Other members are extension attributes: strings under a valid name.
        let extension = LogLine::parse(&line(r#""receivedat":"2026-01-05T08:00:00Z","colour":"red""#)).unwrap();
        assert_eq!(extension.extensions.get("colour").map(String::as_str), Some("red"));
        assert!(extension.to_json().ends_with(r#","colour":"red"}"#), "{}", extension.to_json());
        assert!(err(r#""receivedat":"2026-01-05T08:00:00Z","colour":3"#).contains("is not a string"));
        assert!(
            err(r#""receivedat":"2026-01-05T08:00:00Z","Colour":"red""#).starts_with("extension attribute \"Colour\"")
        );
        // The profile's sequence reads back, and so does an older log's number.
        let padded = line(r#""receivedat":"2026-01-05T08:00:00Z","sequence":"00000000000000000042""#);
        assert_eq!(LogLine::parse(&padded).unwrap().sequence, Some(42));
        assert_eq!(
            LogLine::parse(&line(r#""receivedat":"2026-01-05T08:00:00Z","sequence":42"#)).unwrap().sequence,
            Some(42)
        );
        let parsed = LogLine::parse(&line(r#""receivedat":"2026-01-05T08:00:00Z","hash":"xyz""#)).unwrap();
        assert_eq!(parsed.stored_event().unwrap_err().to_string(), "an accepted entry needs a sequence");
    }
}
