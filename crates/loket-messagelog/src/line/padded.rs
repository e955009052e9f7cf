//! `sequence` as the profile's string-sortable text, read back from text or a number.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(n) => s.serialize_str(&loket_domain::profile::sequence_text(*n)),
        None => s.serialize_none(),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) => loket_domain::profile::parse_sequence(&t)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("sequence {t:?} is not a decimal number"))),
    }
}
