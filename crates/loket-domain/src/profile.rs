//! The NL GOV profile for CloudEvents as loket speaks it on every output: reverse-DNS
//! event types, `source` as an OIN URN, a string-sortable `sequence` with its
//! `sequencetype`, and the rules for extension attributes.
//!
//! The journal keeps the short forms (type `transport-status`, source = partner id), which
//! every policy, schema and figure is written in; the canonical forms are made here, at the
//! edge, from configuration, so a changed prefix or OIN never rewrites stored events.

use std::collections::BTreeMap;

use crate::FieldViolation;

/// The type prefix when none is configured: the chain's reverse-DNS name.
pub const DEFAULT_TYPE_PREFIX: &str = "nl.vreemdelingenketen";

/// The `sequencetype` of loket's `sequence`. The profile's only defined type, `Integer`, is
/// a signed 32-bit number; the gateway's journal sequence is a u64, so loket names its
/// own: the sequence as exactly 20 decimal digits, zero-padded, which sorts as a string in
/// numeric order.
pub const SEQUENCE_TYPE: &str = "DecimalU64";

/// Digits of a `sequence` value: `u64::MAX` has 20.
const SEQUENCE_DIGITS: usize = 20;

/// Longest extension attribute name (CloudEvents advises 20 characters).
pub const MAX_EXTENSION_NAME: usize = 20;
/// Longest value of one extension attribute, in bytes.
pub const MAX_EXTENSION_VALUE: usize = 1024;
/// Most extension attributes a publisher may set on one event.
pub const MAX_EXTENSIONS: usize = 32;

/// The distributed-tracing extension attributes (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// Attribute names a publisher may not set as extensions: CloudEvents' own context
/// attributes (which are fields of the envelope) and the extensions loket fills itself.
/// `traceparent` and `tracestate` are not here: a publisher sends them, the gateway
/// continues the trace.
pub const RESERVED_ATTRIBUTES: &[&str] = &[
    // CloudEvents context attributes and `data`.
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
    // loket's own extensions, on deliveries, Kafka records and message-log lines.
    "sequence",
    "sequencetype",
    "receivedat",
    "completeness",
    "missingexpected",
    "redacted",
    "released",
    "position",
    "outcome",
    "rejection",
    "schemaversion",
    "reason",
    "message",
    "violations",
    "caller",
    "chain",
    "prevhash",
    "hash",
    "pseudonymised",
    "omitted",
    // Retention and erasure (Kafka tombstones, message-log lines of purged or refused entries).
    "tombstone",
    "purgedby",
    "datasize",
    "datasha256",
];

/// How events look on the outside: the type prefix and each partner's `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    prefix: String,
    /// Partner id → its source URN, for partners with an OIN.
    sources: BTreeMap<String, String>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile { prefix: DEFAULT_TYPE_PREFIX.to_owned(), sources: BTreeMap::new() }
    }
}

impl Profile {
    /// A profile with the type prefix (without trailing dot) and, per partner with an OIN,
    /// its OIN and system name (the partner id when none is given).
    pub fn new<'a>(prefix: &str, partners: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>) -> Self {
        let sources = partners
            .into_iter()
            .map(|(partner, oin, system)| (partner.to_owned(), source_urn(oin, system.unwrap_or(partner))))
            .collect();
        Profile { prefix: prefix.trim_end_matches('.').to_owned(), sources }
    }

    /// The type prefix, without trailing dot.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The canonical, reverse-DNS name of a short event type.
    pub fn event_type(&self, short: &str) -> String {
        format!("{}.{short}", self.prefix)
    }

    /// The short type a publisher or subscriber means: the canonical name without its
    /// prefix, or the short name itself (the alias).
    pub fn short_type<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.prefix.as_str()).and_then(|rest| rest.strip_prefix('.')).unwrap_or(name)
    }

    /// The `source` of a partner's events: its OIN URN, or the partner id without an OIN.
    pub fn source(&self, partner: &str) -> String {
        self.sources.get(partner).cloned().unwrap_or_else(|| partner.to_owned())
    }

    /// Whether `source` names `partner`: its id or its URN.
    pub fn is_source_of(&self, source: &str, partner: &str) -> bool {
        source == partner || self.sources.get(partner).is_some_and(|urn| urn == source)
    }
}

/// The profile's URN for an organisation's system: `urn:nld:oin:<OIN>:systeem:<name>`.
pub fn source_urn(oin: &str, system: &str) -> String {
    format!("urn:nld:oin:{oin}:systeem:{system}")
}

/// The `sequence` attribute of a journal sequence (see [`SEQUENCE_TYPE`]).
pub fn sequence_text(sequence: u64) -> String {
    format!("{sequence:0SEQUENCE_DIGITS$}")
}

/// Reads a `sequence` attribute back; plain decimal (older logs) is accepted too.
pub fn parse_sequence(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// Every problem with a publisher's extension attributes, each named
/// `@extensions.<name>`: names are 1 to 20 lowercase letters or digits, not a reserved
/// attribute, values at most [`MAX_EXTENSION_VALUE`] bytes without control characters, at
/// most [`MAX_EXTENSIONS`] of them. Trace context is checked where it is read.
pub fn check_extensions<'a>(extensions: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Vec<FieldViolation> {
    let mut problems = Vec::new();
    if extensions.len() > MAX_EXTENSIONS {
        problems
            .push(FieldViolation::attribute("extensions", format!("at most {MAX_EXTENSIONS} extension attributes")));
    }
    for (name, value) in extensions {
        let at = format!("extensions.{name}");
        let well_formed = (1..=MAX_EXTENSION_NAME).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !well_formed {
            problems.push(FieldViolation::attribute(&at, "a name is 1 to 20 lowercase letters or digits"));
        } else if RESERVED_ATTRIBUTES.contains(&name) {
            problems.push(FieldViolation::attribute(
                &at,
                "is set by the gateway or is a CloudEvents attribute, not by a publisher",
            ));
        }
        if value.len() > MAX_EXTENSION_VALUE {
            problems.push(FieldViolation::attribute(&at, format!("at most {MAX_EXTENSION_VALUE} bytes")));
        } else if value.chars().any(char::is_control) {
            problems.push(FieldViolation::attribute(&at, "contains control characters"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_reverse_dns_and_short_names_are_aliases() {
        let p = Profile::new("nl.vreemdelingenketen.", []);
        assert_eq!(p.event_type("baggage"), "nl.vreemdelingenketen.baggage");
        assert_eq!(p.short_type("nl.vreemdelingenketen.baggage"), "baggage");
        assert_eq!(p.short_type("baggage"), "baggage");
        assert_eq!(p.short_type("nl.vreemdelingenketenbaggage"), "nl.vreemdelingenketenbaggage");
    }

    #[test]
    fn sources_are_urns_where_an_oin_is_configured() {
        let p = Profile::new(DEFAULT_TYPE_PREFIX, [("dtv", "00000001234567890000", Some("ketenregie"))]);
        assert_eq!(p.source("dtv"), "urn:nld:oin:00000001234567890000:systeem:ketenregie");
        assert_eq!(p.source("kmar"), "kmar");
        assert!(p.is_source_of("dtv", "dtv") && p.is_source_of(&p.source("dtv"), "dtv"));
        assert!(!p.is_source_of(&p.source("dtv"), "kmar"));
    }

    #[test]
    fn sequences_sort_as_strings() {
        let texts: Vec<String> = [1u64, 9, 10, 100, u64::MAX].into_iter().map(sequence_text).collect();
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        assert_eq!(texts[0], "00000000000000000001");
        assert_eq!(parse_sequence(&texts[4]), Some(u64::MAX));
        assert_eq!(parse_sequence("42"), Some(42));
        assert_eq!(parse_sequence("-1"), None);
    }

    #[test]
    fn extensions_are_checked_by_name_size_and_ownership() {
        let long = "x".repeat(MAX_EXTENSION_VALUE + 1);
        let problems = check_extensions(
            [("dataref", "https://x/1"), ("Bad", "v"), ("completeness", "1"), ("big", long.as_str())].into_iter(),
        );
        let fields: Vec<&str> = problems.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["@extensions.Bad", "@extensions.completeness", "@extensions.big"]);
    }
}
