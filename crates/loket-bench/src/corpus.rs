//! The benchmark's events: a message log in the NDJSON form `loket gen` and `loket export`
//! write (structured CloudEvents, one per line), turned into publish requests.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use loket_messagelog::timestamp::parse_rfc3339;
use loket_server::proto::{CloudEvent, PublishRequest};
use serde_json::Value;

/// One corpus event and the partner that publishes it.
#[derive(Clone)]
pub struct Item {
    pub source: String,
    pub event: CloudEvent,
    /// The outcome the log recorded (`loket gen` and `loket export` write one), if any.
    pub recorded_accepted: Option<bool>,
}

impl Item {
    /// The publish request for round `round`: ids get a round suffix so that a corpus can be
    /// sent more than once without turning into duplicates.
    pub fn request(&self, round: u64) -> PublishRequest {
        let mut event = self.event.clone();
        event.id = self.id(round);
        PublishRequest { event: Some(event) }
    }

    /// The event id sent in round `round`.
    pub fn id(&self, round: u64) -> String {
        if round > 0 {
            format!("{}~{round}", self.event.id)
        } else {
            self.event.id.clone()
        }
    }

    pub fn data_len(&self) -> usize {
        self.event.data.len()
    }
}

/// The default corpus, written to `dir`: the synthetic chain log of `loket gen` with its
/// default defect rates.
pub fn generated(dir: &Path, cases: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join("corpus.ndjson");
    let options = loket_messagelog::GenOptions {
        seed: 1,
        cases,
        missing_rate: 0.2,
        invalid_rate: 0.05,
        start: 1_767_600_000,
        // From case 1: a corpus may take up to every synthetic V-number.
        first_case: Some(0),
        gaps: loket_messagelog::Gaps { late_baggage: 0.1, missing_features: 0.1, no_consent: 0.1 },
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    loket_messagelog::generate(&options, &mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(path)
}

pub fn load(path: &Path) -> anyhow::Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read corpus {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), n + 1))?;
        let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let source = text("source");
        let data = match v.get("data") {
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(other) => serde_json::to_vec(other)?,
            None => Vec::new(),
        };
        let event = CloudEvent {
            id: text("id"),
            source: source.clone(),
            r#type: text("type"),
            subject: text("subject"),
            time: v.get("time").and_then(Value::as_str).and_then(parse_rfc3339),
            dataschema: text("dataschema"),
            datacontenttype: "application/json".to_owned(),
            data,
            specversion: "1.0".to_owned(),
            extensions: Default::default(),
        };
        let recorded_accepted = v.get("outcome").and_then(Value::as_str).map(|o| o == "accepted");
        items.push(Item { source, event, recorded_accepted });
    }
    if items.is_empty() {
        bail!("corpus {} holds no events", path.display());
    }
    Ok(items)
}

/// The partners that publish in a corpus, sorted.
pub fn sources(items: &[Item]) -> Vec<String> {
    let mut s: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
    s.sort();
    s.dedup();
    s
}
