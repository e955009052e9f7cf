//! The log of `loket gen`: a deterministic synthetic message log of the whole chain. Cases move
//! through reception (coa, gza), detention (dji, dtv), transport (dvo, kmar escorting) and
//! departure; some transports are cancelled (`case.rs`). Every value is invented: V-numbers
//! are in the 9999xxxxxx range, names are role codes. The recorded outcome of each event is
//! what the built-in schemas say (so a generated log replays with `--expect-recorded`).
//!
//! Logs of different seeds can be replayed into one gateway: the cases are numbered from
//! `first_case` (by default 1000 × (seed mod 1000)), and event ids contain the V-number, so
//! seeds that differ modulo 1000 share no case and no id for up to 1000 cases each.
//!
//! Handover gaps are planted at configurable rates ([`Gaps`]) and recorded ([`Planted`]):
//! with no missing or invalid events, they are exactly the gaps the built-in handover
//! expectations find; left-out fields and refused events add gaps of their own.

mod case;

use std::collections::BTreeMap;

use std::io::Write;

use loket_schema::Registry;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::line::{encode_data, LogLine, ViolationJson, ACCEPTED, REJECTED};
use crate::Error;

pub struct GenOptions {
    pub seed: u64,
    pub cases: u32,
    pub missing_rate: f64,
    pub invalid_rate: f64,
    /// Unix seconds of the first event.
    pub start: i64,
    /// The number of the first case; `None`: 1000 × (seed mod 1000).
    pub first_case: Option<u32>,
    pub gaps: Gaps,
}

/// Planted handover gaps: the share of cases in which each goes wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gaps {
    /// Detention re-registers the baggage only after the departure (stale at the handover).
    pub late_baggage: f64,
    /// The return service never records the physical features.
    pub missing_features: f64,
    /// No consent is registered, yet medical files are handed over.
    pub no_consent: f64,
}

/// The case numbers in a V-number's six digits after 9999.
const CASE_NUMBERS: u32 = 1_000_000;

/// What the generator planted, per handover kind: the handovers and the gaps by item,
/// responsible partner and problem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Planted {
    pub handovers: BTreeMap<String, PlantedKind>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlantedKind {
    pub handovers: u64,
    pub ready: u64,
    /// By `item/partner/problem`.
    pub gaps: BTreeMap<String, u64>,
}

impl Planted {
    fn handover(&mut self, kind: &str, gaps: &[(&str, &str, &str)]) {
        let k = self.handovers.entry(kind.to_owned()).or_default();
        k.handovers += 1;
        k.ready += u64::from(gaps.is_empty());
        for (item, partner, problem) in gaps {
            *k.gaps.entry(format!("{item}/{partner}/{problem}")).or_default() += 1;
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub events: u64,
    pub planted: Planted,
}

/// One planned publication.
struct Planned {
    /// Unix µs when the gateway receives it.
    received: i64,
    case: u32,
    step: u32,
    source: &'static str,
    event_type: &'static str,
    data: Value,
}

fn stamp(micros: i64) -> String {
    loket_domain::time::rfc3339(micros).unwrap_or_default()
}
/// Drops some expected top-level fields of `data`.
fn drop_expected(rng: &mut ChaCha8Rng, registry: &Registry, event_type: &str, data: &mut Value) {
    let Ok(schema) = registry.resolve(event_type, None) else { return };
    let top: Vec<&str> =
        schema.expected().iter().filter_map(|p| p.strip_prefix('/')).filter(|p| !p.contains('/')).collect();
    let n = rng.random_range(1..=2.min(top.len().max(1)));
    for key in top.choose_multiple(rng, n) {
        if let Some(obj) = data.as_object_mut() {
            obj.remove(*key);
        }
    }
}

/// Breaks `data` so that the schema refuses it, the way publishing systems do.
fn break_event(rng: &mut ChaCha8Rng, event_type: &str, data: &mut Value) {
    let Some(obj) = data.as_object_mut() else { return };
    match (event_type, rng.random_range(0..2)) {
        ("transport-status", 0) => {
            obj.insert("status".into(), json!("cancelled"));
            obj.remove("cancellationReason");
        }
        ("transport-status", _) => {
            obj.remove("transportId");
        }
        ("baggage", _) => {
            obj.insert("pieces".into(), json!("two"));
        }
        ("physical-features", _) => {
            obj.insert("height".into(), json!(-5));
        }
        ("medical-transfer-consent", _) => {
            obj.remove("given");
        }
        _ => {
            obj.remove("consentId");
        }
    }
}

/// Writes the log; returns the number of events and the planted gaps.
pub fn generate(options: &GenOptions, out: &mut dyn Write) -> Result<Generated, Error> {
    let registry = Registry::embedded().map_err(Error::Schemas)?;
    let first = options.first_case.unwrap_or((options.seed % 1000) as u32 * 1000);
    if u64::from(first) + u64::from(options.cases) >= u64::from(CASE_NUMBERS) {
        return Err(Error::CaseNumbers { first, cases: options.cases });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut plan = Vec::new();
    let mut planted = Planted::default();
    for case in 0..options.cases {
        plan.extend(case::case_plan(&mut rng, case, first + case + 1, options.start, &options.gaps, &mut planted));
    }
    plan.sort_by_key(|p| (p.received, p.case, p.step));
    let mut count = 0;
    for mut p in plan {
        if rng.random_bool(options.invalid_rate.clamp(0.0, 1.0)) {
            break_event(&mut rng, p.event_type, &mut p.data);
        } else if rng.random_bool(options.missing_rate.clamp(0.0, 1.0)) {
            drop_expected(&mut rng, &registry, p.event_type, &mut p.data);
        }
        let schema = registry.resolve(p.event_type, None).map_err(Error::NoSchema)?;
        let data =
            serde_json::to_vec(&p.data).map_err(|source| Error::Encode { what: "a generated payload", source })?;
        let (raw, data_base64) = encode_data(&data);
        let subject = p.data["vNumber"].as_str().unwrap_or_default().to_owned();
        let mut line = LogLine {
            specversion: "1.0".into(),
            id: format!("{}-{}-{:02}", p.source, subject, p.step),
            source: p.source.into(),
            event_type: p.event_type.into(),
            subject,
            time: Some(stamp(p.received - rng.random_range(1..120) * 1_000_000)),
            dataschema: schema.id().to_owned(),
            datacontenttype: "application/json".into(),
            data: raw,
            data_base64,
            outcome: ACCEPTED.into(),
            sequence: None,
            sequencetype: None,
            rejection: None,
            receivedat: stamp(p.received),
            completeness: None,
            missingexpected: None,
            schemaversion: Some(schema.version()),
            reason: None,
            message: None,
            violations: None,
            caller: None,
            chain: None,
            prevhash: None,
            hash: None,
            pseudonymised: None,
            omitted: None,
            datasize: None,
            datasha256: None,
            purgedby: None,
            traceparent: None,
            tracestate: None,
            extensions: Default::default(),
        };
        match schema.check(&p.data) {
            Ok(c) => {
                line.completeness = Some(format!("{}", c.score));
                line.missingexpected = Some(c.missing.join(","));
            }
            Err(mut violations) => {
                violations.sort();
                line.outcome = REJECTED.into();
                line.schemaversion = None;
                line.reason = Some("SCHEMA_VIOLATION".into());
                let list: Vec<ViolationJson> = violations
                    .into_iter()
                    .map(|v| ViolationJson { field: v.field, description: v.description })
                    .collect();
                line.violations =
                    Some(serde_json::to_string(&list).map_err(|source| Error::Encode { what: "violations", source })?);
            }
        }
        writeln!(out, "{}", line.to_json()).map_err(Error::Write)?;
        count += 1;
    }
    Ok(Generated { events: count, planted })
}
