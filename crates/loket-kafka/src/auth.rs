//! Records the gateways can trust: every record the relay produces carries an
//! authentication tag, HMAC-SHA256 with a key the gateways share, over
//!
//! - the topic (so a record copied from one partner's delivery topic to another's does not
//!   verify there: a gateway produced it for that audience only),
//! - the record key and value,
//! - every `ce_` header and `content-type`, sorted by name and then value (so a header
//!   added, removed, changed or repeated anywhere breaks the tag),
//!
//! each as a length-prefixed field after a version label. The tag travels in the header
//! [`TAG_HEADER`] as `v1=<hex>`. Kafka-mode subscriptions deliver only records whose tag
//! verifies ([`RecordKey::verify`]); Kafka ACLs are the first line, this catches a
//! misconfigured cluster or a principal that may write where it should not.
//!
//! What the tag does not catch: a valid record written again to the same topic. That is a
//! duplicate with the same `ce_source`/`ce_id`, which the subscription drops within its
//! deduplication window, and otherwise an event the partner was entitled to anyway.

use std::fmt;

use hmac::{Hmac, Mac};
use rdkafka::message::{Headers, Message};
use sha2::Sha256;

/// The header that carries a record's tag.
pub const TAG_HEADER: &str = "loket-tag";
const TAG_VERSION: &str = "v1=";
const DOMAIN: &[u8] = b"loket kafka record v1";
/// The shortest key accepted: the output size of SHA-256.
pub const MIN_KEY_BYTES: usize = 32;
/// Marks an absent key, value or header value (no length can be this).
const ABSENT: u32 = u32::MAX;

type HmacSha256 = Hmac<Sha256>;

/// Why a record was not accepted as one a gateway produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagProblem {
    /// No `loket-tag` header.
    Missing,
    /// A tag that is not `v1=<64 hex digits>`, or more than one.
    Unreadable,
    /// A tag that does not match the record.
    Mismatch,
}

impl TagProblem {
    /// A stable label, for metrics and the denial log.
    pub fn code(&self) -> &'static str {
        match self {
            TagProblem::Missing => "missing-tag",
            TagProblem::Unreadable => "unreadable-tag",
            TagProblem::Mismatch => "wrong-tag",
        }
    }
}

impl fmt::Display for TagProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagProblem::Missing => "the record has no loket-tag header",
            TagProblem::Unreadable => "the record's loket-tag header is not one v1=<hex> tag",
            TagProblem::Mismatch => {
                "the record's loket-tag does not match it (not produced by a gateway with this key)"
            }
        })
    }
}

/// The key the gateways of a cluster share to tag and verify records (kept as the keyed
/// HMAC state, cloned for each record).
#[derive(Clone)]
pub struct RecordKey(HmacSha256);

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKey(…)")
    }
}

impl RecordKey {
    /// A key from the contents of a key file: the bytes without trailing whitespace (so
    /// `head -c 48 /dev/urandom | base64 > key` and an editor's final newline both work),
    /// at least [`MIN_KEY_BYTES`] of them.
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, String> {
        let end = contents.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        let key = &contents[..end];
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "holds {} bytes, fewer than the {MIN_KEY_BYTES} a record key needs (make one with \
                 `head -c 48 /dev/urandom | base64`)",
                key.len()
            ));
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|e| format!("cannot key HMAC-SHA256 with it: {e}"))?;
        Ok(RecordKey(mac))
    }

    /// The tag header's value for a record with these parts.
    pub fn tag<'a>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> String {
        let mac = self.input(topic, key, value, headers);
        format!("{TAG_VERSION}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks the tag of a record as a consumer received it.
    pub fn verify(&self, message: &impl Message) -> Result<(), TagProblem> {
        let mut tags = Vec::new();
        let mut signed = Vec::new();
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                if h.key == TAG_HEADER {
                    tags.push(h.value);
                } else {
                    signed.push((h.key, h.value));
                }
            }
        }
        let tag = match tags.as_slice() {
            [] => return Err(TagProblem::Missing),
            [Some(tag)] => std::str::from_utf8(tag)
                .ok()
                .and_then(|t| t.strip_prefix(TAG_VERSION))
                .and_then(|t| hex::decode(t).ok())
                .filter(|t| t.len() == 32)
                .ok_or(TagProblem::Unreadable)?,
            _ => return Err(TagProblem::Unreadable),
        };
        self.input(message.topic(), message.key(), message.payload(), signed)
            .verify_slice(&tag)
            .map_err(|_| TagProblem::Mismatch)
    }

    fn input<'a>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> HmacSha256 {
        let mut mac = self.0.clone();
        field(&mut mac, Some(DOMAIN));
        field(&mut mac, Some(topic.as_bytes()));
        field(&mut mac, key);
        field(&mut mac, value);
        let mut signed: Vec<(&str, Option<&[u8]>)> =
            headers.into_iter().filter(|(name, _)| name.starts_with("ce_") || *name == "content-type").collect();
        signed.sort_unstable();
        mac.update(&(signed.len() as u32).to_be_bytes());
        for (name, value) in signed {
            field(&mut mac, Some(name.as_bytes()));
            field(&mut mac, value);
        }
        mac
    }
}

fn field(mac: &mut HmacSha256, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            mac.update(&(bytes.len() as u32).to_be_bytes());
            mac.update(bytes);
        }
        None => mac.update(&ABSENT.to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use rdkafka::Timestamp;

    fn key(byte: u8) -> RecordKey {
        RecordKey::from_file_contents(&[byte; 40]).unwrap()
    }

    fn message<K: AsRef<str>, V: AsRef<str>>(topic: &str, value: &str, headers: &[(K, V)]) -> OwnedMessage {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key: key.as_ref(), value: Some(value.as_ref().as_bytes()) })
        });
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            Some(b"1234567890".to_vec()),
            topic.into(),
            Timestamp::NotAvailable,
            0,
            1,
            Some(headers),
        )
    }

    fn tagged(k: &RecordKey, topic: &str, value: &str, headers: &[(&str, &str)]) -> OwnedMessage {
        let tag = k.tag(
            topic,
            Some(b"1234567890"),
            Some(value.as_bytes()),
            headers.iter().map(|(n, v)| (*n, Some(v.as_bytes()))),
        );
        let mut all = headers.to_vec();
        all.push((TAG_HEADER, &tag));
        message(topic, value, &all)
    }

    const HEADERS: &[(&str, &str)] = &[("ce_id", "a-1"), ("ce_source", "dvo"), ("content-type", "application/json")];

    #[test]
    fn a_tagged_record_verifies_and_any_change_breaks_it() {
        let k = key(7);
        assert_eq!(k.verify(&tagged(&k, "loket.delivery.kmar", "{}", HEADERS)), Ok(()));
        // Header order does not matter; other headers are not signed.
        let reordered = [HEADERS[2], HEADERS[0], HEADERS[1], ("traceparent", "00-x")];
        let tag = k.tag("t", Some(b"1234567890"), Some(b"{}"), HEADERS.iter().map(|(n, v)| (*n, Some(v.as_bytes()))));
        let mut with_tag = reordered.to_vec();
        with_tag.push((TAG_HEADER, &tag));
        assert_eq!(k.verify(&message("t", "{}", &with_tag)), Ok(()));

        // Another key, another topic, another value, a changed or an added ce_ header.
        assert_eq!(key(8).verify(&tagged(&k, "t", "{}", HEADERS)), Err(TagProblem::Mismatch));
        let copied = tagged(&k, "loket.delivery.dji", "{}", HEADERS);
        let moved = message("loket.delivery.kmar", "{}", &headers_of(&copied));
        assert_eq!(k.verify(&moved), Err(TagProblem::Mismatch), "a record copied to another topic");
        let mut forged = headers_of(&tagged(&k, "t", "{}", HEADERS));
        assert_eq!(k.verify(&message("t", "{\"x\":1}", &forged)), Err(TagProblem::Mismatch));
        forged.push(("ce_source".into(), "gza".into()));
        assert_eq!(k.verify(&message("t", "{}", &forged)), Err(TagProblem::Mismatch), "a repeated ce_source");
    }

    fn headers_of(m: &OwnedMessage) -> Vec<(String, String)> {
        m.headers()
            .unwrap()
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8(h.value.unwrap().to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn missing_and_unreadable_tags_are_told_apart() {
        let k = key(7);
        assert_eq!(k.verify(&message("t", "{}", HEADERS)), Err(TagProblem::Missing));
        let mut bad = HEADERS.to_vec();
        bad.push((TAG_HEADER, "v1=zz"));
        assert_eq!(k.verify(&message("t", "{}", &bad)), Err(TagProblem::Unreadable));
        let good = headers_of(&tagged(&k, "t", "{}", HEADERS));
        let mut twice = good.clone();
        twice.push(good.last().unwrap().clone());
        assert_eq!(k.verify(&message("t", "{}", &twice)), Err(TagProblem::Unreadable));
    }

    #[test]
    fn a_key_file_needs_enough_bytes() {
        assert!(RecordKey::from_file_contents(b"short\n").unwrap_err().contains("fewer than the 32"));
        let with_newline = [[b'a'; 32].as_slice(), b"\n"].concat();
        let k = RecordKey::from_file_contents(&with_newline).unwrap();
        let same = RecordKey::from_file_contents(&[b'a'; 32]).unwrap();
        assert_eq!(k.tag("t", None, None, []), same.tag("t", None, None, []), "trailing whitespace is not key");
    }
}
