//! `[retention]`: how long the gateway keeps what it stores. Absent periods mean "kept
//! forever", so a configuration without the section behaves as before.

use std::collections::BTreeMap;

use loket_journal::RetentionPolicy;
use loket_schema::Registry;
use serde::Deserialize;

use super::period::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long events of a type without its own period are kept, counted from when the
    /// gateway received them. Absent: forever.
    pub default: Option<Period>,
    /// Per event type, e.g. `"medical-file-transfer" = "30d"`, `"transport-status" = "1y"`.
    #[serde(default)]
    pub types: BTreeMap<String, Period>,
    /// How long the rejection log keeps refused publishes. Absent: forever.
    pub rejections: Option<Period>,
    /// How long the denial log keeps refusals, redactions and withholdings. Absent: forever.
    pub denials: Option<Period>,
    /// How often the background compaction runs.
    #[serde(default = "default_compact_every")]
    pub compact_every: Period,
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
            compact_every: default_compact_every(),
        }
    }
}

impl RetentionConfig {
    /// The journal's policy.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            default: self.default.map(|p| p.0),
            types: self.types.iter().map(|(t, p)| (t.clone(), p.0)).collect(),
            rejections: self.rejections.map(|p| p.0),
        }
    }

    /// Whether anything expires at all.
    pub fn any(&self) -> bool {
        self.default.is_some() || !self.types.is_empty() || self.rejections.is_some() || self.denials.is_some()
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
        let periods = self.types.iter().map(|(t, p)| (format!("retention.types.{t}"), p)).chain(
            [
                ("retention.default", &self.default),
                ("retention.rejections", &self.rejections),
                ("retention.denials", &self.denials),
            ]
            .into_iter()
            .filter_map(|(name, p)| p.as_ref().map(|p| (name.to_owned(), p))),
        );
        for (name, period) in periods.chain([("retention.compact_every".to_owned(), &self.compact_every)]) {
            if period.0.is_zero() {
                problems.push(format!("{name}: must be longer than 0s"));
            }
        }
        problems
    }
}
