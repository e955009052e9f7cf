//! Pseudonymising the message log for integration testers: what a tester may see of an
//! entry.
//!
//! A tester replays an export against a test gateway and expects every outcome (accepted
//! or rejected, the failing fields, the completeness) to come out as recorded. So the
//! pseudonym of a value keeps everything validation, the quality rules and completeness
//! look at, and replaces what identifies a person:
//!
//! - a V-number becomes a keyed hash of the same shape: a valid V-number (10 digits) stays
//!   a valid V-number, consistently within the export (same key), so cases still
//!   correlate; a malformed one stays malformed the same way (each character keeps its
//!   class);
//! - free text (a string the schema constrains by no `enum`, `const`, `pattern` or
//!   `format`, or a string the schema does not describe) becomes a keyed placeholder of
//!   the same number of characters, blank only when the original was;
//! - structured values (enumerations, timestamps, numbers, booleans) stay: outcomes depend
//!   on them (`if`/`then` rules, CEL rules) and they describe no one by themselves.
//!
//! The key is chosen per export, so two exports cannot be joined on pseudonyms.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The member that carries the case's V-number in every payload.
const V_NUMBER: &str = "vNumber";

/// Pseudonyms under one key.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// The MAC keyed once: keying hashes the key, so each pseudonym starts from a clone.
    keyed: Box<Hmac<Sha256>>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser { key: <hidden> }")
    }
}

/// A payload after pseudonymisation, with what was replaced by what, so that the same
/// values can be scrubbed from the texts around it (ids, messages, violation descriptions).
#[derive(Debug, Clone, PartialEq)]
pub struct Pseudonymised {
    pub data: Value,
    /// (original, pseudonym), longest original first.
    pub replaced: Vec<(String, String)>,
}

impl Pseudonymiser {
    pub fn new(key: &[u8]) -> Self {
        Self { keyed: Box::new(Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length")) }
    }

    /// `count` keyed bytes for `value` in `domain` (a V-number and a text that happen to
    /// be equal get unrelated pseudonyms).
    fn stream(&self, domain: &str, value: &str, count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(count + 32);
        let mut block = 0u32;
        while out.len() < count {
            let mut mac = (*self.keyed).clone();
            mac.update(domain.as_bytes());
            mac.update(&[0]);
            mac.update(value.as_bytes());
            mac.update(&block.to_be_bytes());
            out.extend_from_slice(&mac.finalize().into_bytes());
            block += 1;
        }
        out.truncate(count);
        out
    }

    /// The pseudonym of a case (V-number, or whatever stands in the subject): every digit
    /// a keyed digit, every letter a keyed letter of the same case, the rest as it was.
    /// A value's keyed digest, 64 hex digits: a pseudonym without the value's shape, for
    /// records that must never hold the value itself (the processing log).
    pub fn digest(&self, domain: &str, value: &str) -> String {
        // `encode_to_slice` rather than `hex::encode`, whose char-by-char collect cost half
        // as much as the keyed hash itself (one digest per delivery in the processing log).
        let bytes = self.stream(domain, value, 32);
        let mut out = vec![0; 64];
        hex::encode_to_slice(&bytes, &mut out).expect("twice the bytes");
        String::from_utf8(out).expect("hex is ASCII")
    }

    pub fn case(&self, case: &str) -> String {
        let bytes = self.stream("case", case, case.chars().count());
        case.chars()
            .zip(bytes)
            .map(|(c, b)| match c {
                '0'..='9' => char::from(b'0' + b % 10),
                'a'..='z' => char::from(b'a' + b % 26),
                'A'..='Z' => char::from(b'A' + b % 26),
                other => other,
            })
            .collect()
    }

    /// The placeholder of a free text: keyed lowercase letters, as many as the text has
    /// characters; a blank text (which counts as missing) stays as it is.
    pub fn text(&self, text: &str) -> String {
        if text.trim().is_empty() {
            return text.to_owned();
        }
        self.stream("text", text, text.chars().count()).into_iter().map(|b| char::from(b'a' + b % 26)).collect()
    }

    /// `data` (a payload of `case`, described by `schema`, a JSON Schema document) with
    /// its V-number and free text replaced. `case` is replaced wherever a string equals it.
    pub fn payload(&self, case: &str, data: &Value, schema: &Value) -> Pseudonymised {
        let mut replaced = Vec::new();
        if !case.is_empty() {
            replaced.push((case.to_owned(), self.case(case)));
        }
        let data = self.walk(data, Some(schema), schema, true, &mut replaced);
        replaced.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        replaced.dedup();
        Pseudonymised { data, replaced }
    }

    fn walk(
        &self,
        value: &Value,
        schema: Option<&Value>,
        root: &Value,
        top: bool,
        replaced: &mut Vec<(String, String)>,
    ) -> Value {
        let schema = schema.map(|s| resolve(s, root));
        match value {
            Value::Object(members) => {
                let mut out = Map::new();
                for (key, member) in members {
                    let below = schema.and_then(|s| s.get("properties")).and_then(|p| p.get(key));
                    let pseudonym = if top && key == V_NUMBER {
                        match member {
                            Value::String(v) => {
                                let p = self.case(v);
                                replaced.push((v.clone(), p.clone()));
                                Value::String(p)
                            }
                            other => self.walk(other, below, root, false, replaced),
                        }
                    } else {
                        self.walk(member, below, root, false, replaced)
                    };
                    out.insert(key.clone(), pseudonym);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let below = schema.and_then(|s| s.get("items"));
                Value::Array(items.iter().map(|i| self.walk(i, below, root, false, replaced)).collect())
            }
            Value::String(text) if is_free_text(schema) && !text.trim().is_empty() => {
                let p = self.text(text);
                replaced.push((text.clone(), p.clone()));
                Value::String(p)
            }
            other => other.clone(),
        }
    }

    /// `text` with every original of `replaced` replaced by its pseudonym (also where it
    /// appears JSON-quoted, as in violation descriptions).
    pub fn scrub(text: &str, replaced: &[(String, String)]) -> String {
        let inner = |s: &str| {
            let quoted = Value::String(s.to_owned()).to_string();
            quoted[1..quoted.len() - 1].to_owned()
        };
        let mut out = text.to_owned();
        for (original, pseudonym) in replaced.iter().filter(|(o, _)| !o.is_empty()) {
            out = out.replace(original.as_str(), pseudonym);
            let escaped = inner(original);
            if escaped != *original {
                out = out.replace(&escaped, &inner(pseudonym));
            }
        }
        out
    }
}

/// A schema node with a local `$ref` (`#/$defs/...`) followed.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => root.pointer(pointer).unwrap_or(schema),
        None => schema,
    }
}

/// Whether a string under `schema` is free text: nothing but its length is constrained.
/// A string the schema does not describe (in a refused payload) counts as free text.
fn is_free_text(schema: Option<&Value>) -> bool {
    schema.is_none_or(|s| !["enum", "const", "pattern", "format"].iter().any(|k| s.get(k).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"$defs": {"who": {"properties": {"partner": {"type": "string", "pattern": "^[a-z]+$"},
                                                "name": {"type": "string"}}}},
               "properties": {"vNumber": {"type": "string", "pattern": "^[0-9]{10}$"},
                              "reason": {"type": "string", "enum": ["removal"]},
                              "at": {"type": "string", "format": "date-time"},
                              "notes": {"type": "array", "items": {"type": "string"}},
                              "to": {"$ref": "#/$defs/who"}}})
    }

    #[test]
    fn keeps_shape_and_structure_and_replaces_cases_and_free_text() {
        let p = Pseudonymiser::new(b"k1");
        let data = json!({"vNumber": "9999000001", "reason": "removal", "at": "2024-03-14T09:00:00Z",
                          "notes": ["afraid of flying", " "], "to": {"partner": "kmar", "name": "nurse 7"}, "n": 3});
        let out = p.payload("9999000001", &data, &schema());
        let v = out.data["vNumber"].as_str().unwrap();
        assert!(v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()) && v != "9999000001");
        assert_eq!(v, p.case("9999000001"), "consistent under one key");
        assert_ne!(v, Pseudonymiser::new(b"k2").case("9999000001"), "another export, another pseudonym");
        assert_eq!(out.data["reason"], "removal");
        assert_eq!(out.data["at"], "2024-03-14T09:00:00Z");
        assert_eq!(out.data["to"]["partner"], "kmar", "a patterned value is structure");
        assert_eq!(out.data["n"], 3);
        let note = out.data["notes"][0].as_str().unwrap();
        assert_eq!(note.chars().count(), "afraid of flying".chars().count());
        assert!(!note.contains("afraid"));
        assert_eq!(out.data["notes"][1], " ", "blank stays blank (missing stays missing)");
        assert_ne!(out.data["to"]["name"], "nurse 7");
        let message = "/notes/0: \"afraid of flying\" is too long; case 9999000001";
        let scrubbed = Pseudonymiser::scrub(message, &out.replaced);
        assert!(!scrubbed.contains("afraid") && !scrubbed.contains("9999000001"), "{scrubbed}");
        assert_eq!(p.case("12"), p.case("12"));
        assert_eq!(p.case("12").len(), 2, "a malformed V-number stays malformed");
    }
}
