//! `[retention]`: how long the gateway keeps what it stores. Absent periods mean "kept
//! forever", so a configuration without the section behaves as before.

use std::collections::BTreeMap;
use std::fmt;

use loket_journal::RetentionPolicy;
use loket_schema::Registry;
use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::period::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long events of a type without its own period are kept, counted from when the
    /// gateway received them. Absent: forever.
    pub default: Option<Period>,
    /// Per event type, e.g. `"transport-status" = "1y"` (from receipt), or
    /// `"medical-file-transfer" = { period = "30d", from = "case-last-event" }`: such an
    /// event expires only once its case has had no event for the period.
    #[serde(default)]
    pub types: BTreeMap<String, TypePeriod>,
    /// How long the rejection log keeps refused publishes. Absent: forever.
    pub rejections: Option<Period>,
    /// How long the denial log keeps refusals, redactions and withholdings. Absent: forever.
    pub denials: Option<Period>,
    /// How long the processing log (`[processing]`) keeps its records, counted from when
    /// each processing ended. Absent: forever.
    pub processing: Option<Period>,
    /// How long the quality figures (per day × partner × type, and the handover figures per
    /// day × kind) are kept, counted from the end of their day. They hold no personal data
    /// (a case's handover state goes with its events) but must not grow forever.
    #[serde(default = "default_quality")]
    pub quality: Period,
    /// How often the background compaction runs.
    #[serde(default = "default_compact_every")]
    pub compact_every: Period,
}

fn default_quality() -> Period {
    Period::days(730)
}

fn default_compact_every() -> Period {
    Period(std::time::Duration::from_secs(600))
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default: None,
            types: BTreeMap::new(),
            rejections: None,
            denials: None,
            processing: None,
            quality: default_quality(),
            compact_every: default_compact_every(),
        }
    }
}

impl RetentionConfig {
    /// The journal's policy.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            default: self.default.map(|p| p.0),
            types: self.types.iter().map(|(t, p)| (t.clone(), p.period.0)).collect(),
            rejections: self.rejections.map(|p| p.0),
            from_case_last_event: self
                .types
                .iter()
                .filter(|(_, p)| p.from == Anchor::CaseLastEvent)
                .map(|(t, _)| t.clone())
                .collect(),
        }
    }

    /// Whether any entry expires (the quality figures' days always do, by their default).
    pub fn any(&self) -> bool {
        self.default.is_some()
            || !self.types.is_empty()
            || self.rejections.is_some()
            || self.denials.is_some()
            || self.processing.is_some()
    }

    /// Every problem: unknown event types, zero periods.
    pub fn problems(&self, registry: &Registry) -> Vec<String> {
        let known: Vec<&str> = registry.event_types().collect();
        let mut problems: Vec<String> = self
            .types
            .keys()
            .filter(|t| !known.contains(&t.as_str()))
            .map(|t| format!("retention.types: {t:?} is not an event type of the schemas"))
            .collect();
        let periods = self.types.iter().map(|(t, p)| (format!("retention.types.{t}"), &p.period)).chain(
            [
                ("retention.default", &self.default),
                ("retention.rejections", &self.rejections),
                ("retention.denials", &self.denials),
                ("retention.processing", &self.processing),
            ]
            .into_iter()
            .filter_map(|(name, p)| p.as_ref().map(|p| (name.to_owned(), p))),
        );
        let always = [
            ("retention.compact_every".to_owned(), &self.compact_every),
            ("retention.quality".to_owned(), &self.quality),
        ];
        for (name, period) in periods.chain(always) {
            if period.0.is_zero() {
                problems.push(format!("{name}: must be longer than 0s"));
            }
        }
        problems
    }
}

/// One event type's period: `"30d"`, counted from each event's receipt, or a table
/// `{ period = "30d", from = "case-last-event" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypePeriod {
    pub period: Period,
    pub from: Anchor,
}

/// Where a type's period starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// When the gateway received the event.
    #[default]
    Received,
    /// When the gateway received the last event of the event's case.
    CaseLastEvent,
}

/// The table form of [`TypePeriod`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypePeriodTable {
    /// How long, like `"30d"`.
    period: Period,
    /// From when: `"received"` (the default) or `"case-last-event"`.
    #[serde(default)]
    from: Anchor,
}

impl<'de> Deserialize<'de> for TypePeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = TypePeriod;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a period like \"30d\" or a table like { period = \"30d\", from = \"case-last-event\" }")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<TypePeriod, E> {
                let period = Period::deserialize(text.into_deserializer())?;
                Ok(TypePeriod { period, from: Anchor::Received })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypePeriod, A::Error> {
                let table = TypePeriodTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TypePeriod { period: table.period, from: table.from })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RetentionConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_type_period_is_a_text_or_a_table_with_its_anchor() {
        let c = parse(
            "[types]\nbaggage = \"1y\"\n\"medical-file-transfer\" = { period = \"30d\", from = \"case-last-event\" }\n\
             \"transport-status\" = { period = \"2d\" }\n",
        )
        .unwrap();
        let policy = c.policy();
        assert_eq!(policy.types["medical-file-transfer"], Period::days(30).0);
        assert_eq!(policy.types["transport-status"], Period::days(2).0);
        assert_eq!(policy.from_case_last_event, ["medical-file-transfer".to_owned()].into_iter().collect());
        let unknown = parse("[types]\nbaggage = { period = \"1d\", since = \"received\" }\n").unwrap_err();
        assert!(unknown.contains("unknown field `since`"), "{unknown}");
        let anchor = parse("[types]\nbaggage = { period = \"1d\", from = \"case\" }\n").unwrap_err();
        assert!(anchor.contains("case-last-event"), "{anchor}");
        let period = parse("[types]\nbaggage = \"soon\"\n").unwrap_err();
        assert!(period.contains("is not a period"), "{period}");
        assert!(parse("[types]\nbaggage = 3\n").unwrap_err().contains("a period like"));
    }
}
