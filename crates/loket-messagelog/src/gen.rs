//! The log of `loket gen`: a deterministic synthetic message log of the whole chain. Cases move
//! through reception (coa, gza), detention (dji, dtv), transport (dvo, kmar escorting) and
//! departure; some transports are cancelled. Every value is invented: V-numbers are in the
//! 9999xxxxxx range, names are role codes. The recorded outcome of each event is what the
//! built-in schemas say (so a generated log replays with `--expect-recorded`).

use std::io::Write;

use loket_schema::Registry;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

const LOCATIONS: &[&str] = &[
    "reception location Ter Apel (synthetic)",
    "reception location Budel (synthetic)",
    "reception location Zweeloo (synthetic)",
];
const DETENTION: &[&str] = &["detention centre Rotterdam (synthetic)", "detention centre Zeist (synthetic)"];
const LANGUAGES: &[&str] = &["ar", "fr", "en", "ti", "fa", "ru", "tr"];
const ITEM_TEXT: &[(&str, &str)] = &[
    ("clothing", "bag with clothes, two pairs of shoes and a winter coat"),
    ("documents", "envelope with copies of travel documents and letters"),
    ("electronics", "mobile phone with charger and earphones"),
    ("personal-care", "toiletry bag with razor, toothbrush and soap"),
    ("medication", "box of prescribed tablets in original packaging"),
    ("valuables", "wristwatch and a small silver necklace"),
    ("other", "prayer mat and a few books in a plastic bag"),
];
const MARKS: &[(&str, &str, &str)] = &[
    ("scar", "left forearm", "straight scar of about 4 cm"),
    ("tattoo", "right shoulder", "small five-pointed star in dark blue ink"),
    ("birthmark", "neck, left side", "light brown birthmark about the size of a coin"),
    ("piercing", "left ear", "two small rings in the ear lobe"),
    ("burn", "back of the right hand", "old burn mark, irregular shape"),
];

fn case_plan(rng: &mut ChaCha8Rng, case: u32, start: i64) -> Vec<Planned> {
    let v = format!("9999{:06}", case + 1);
    let mut t = start * 1_000_000 + i64::from(case) * rng.random_range(20..90) * 1_000_000;
    let mut plan = Vec::new();
    let mut step = 0;
    let mut add = |t: i64, source: &'static str, event_type: &'static str, data: Value| {
        step += 1;
        plan.push(Planned { received: t, case, step, source, event_type, data });
    };
    let advance = |t: &mut i64, rng: &mut ChaCha8Rng, lo: i64, hi: i64| {
        *t += rng.random_range(lo..hi) * 1_000_000;
    };
    let reception = *LOCATIONS.choose(rng).expect("non-empty");
    let detention = *DETENTION.choose(rng).expect("non-empty");
    let consent_id = format!("consent-{v}-1");
    let forced = rng.random_bool(0.7);
    let officer = |rng: &mut ChaCha8Rng, who: &str| format!("{who}-officer-{:04}", rng.random_range(1..9999));
    let items = |rng: &mut ChaCha8Rng| {
        let n = rng.random_range(2..6);
        let mut chosen: Vec<_> = ITEM_TEXT.choose_multiple(rng, n).collect();
        chosen.sort();
        chosen.into_iter().map(|(c, d)| json!({"category": c, "description": d})).collect::<Vec<_>>()
    };

    // Reception: baggage registered by coa, consent signed at the care provider.
    let bag = items(rng);
    let registered = stamp(t);
    let by = officer(rng, "coa");
    let weight = f64::from(rng.random_range(80..320)) / 10.0;
    add(
        t,
        "coa",
        "baggage",
        json!({
            "vNumber": v, "pieces": bag.len(), "totalWeightKg": weight, "items": bag, "phase": "reception",
            "storageLocation": format!("{reception}, luggage room"), "instructionVersion": "2018-05",
            "registeredAt": registered, "registeredBy": by,
        }),
    );
    advance(&mut t, rng, 600, 7200);
    let signed = stamp(t);
    let valid_until = stamp(t + 180 * 86_400 * 1_000_000);
    let language = *LANGUAGES.choose(rng).expect("non-empty");
    let interpreter = rng.random_bool(0.6);
    add(
        t,
        "gza",
        "medical-transfer-consent",
        json!({
            "vNumber": v, "consentId": consent_id, "given": true,
            "recipients": [{"partner": "dji", "role": "medical-service"}, {"partner": "kmar", "role": "medical-service"}],
            "signedAt": signed, "validUntil": valid_until, "interpreterUsed": interpreter, "formLanguage": language,
        }),
    );
    advance(&mut t, rng, 3600, 86_400);
    let transferred = stamp(t);
    let gza_doctor = format!("gza-doctor-{:04}", rng.random_range(1..999));
    add(
        t,
        "gza",
        "medical-file-transfer",
        json!({
            "vNumber": v, "reason": "to-detention",
            "fromCareProfessional": {"partner": "gza", "role": "general-practitioner", "name": gza_doctor},
            "toCareProfessional": {"partner": "dji", "role": "medical-service", "name": "dji-medical-desk"},
            "fileReference": format!("gza-medfile-{v}"), "consentId": consent_id, "fitToFly": "not-assessed",
            "medicationDuringTransport": [], "attentionPoints": ["needs glasses for reading", "prefers a female doctor"],
            "transferredAt": transferred,
        }),
    );

    // Detention: dtv records features, dji registers baggage again.
    advance(&mut t, rng, 3600, 43_200);
    let mark_count = rng.random_range(0..3);
    let marks: Vec<Value> = MARKS
        .choose_multiple(rng, mark_count)
        .map(|(k, l, d)| json!({"kind": k, "bodyLocation": l, "description": d}))
        .collect();
    let features_by = officer(rng, "dtv");
    let height = rng.random_range(150..200);
    let build = ["slight", "slender", "average", "athletic", "stocky"][rng.random_range(0..5)];
    let eyes = ["brown", "dark-brown", "hazel", "green", "blue"][rng.random_range(0..5)];
    let hair = ["black", "dark-brown", "brown", "grey", "bald"][rng.random_range(0..5)];
    add(
        t,
        "dtv",
        "physical-features",
        json!({
            "vNumber": v, "height": height, "build": build, "eyeColour": eyes, "hairColour": hair,
            "distinguishingMarks": marks, "photoReference": format!("dtv-photo-{v}"),
            "recordedAt": stamp(t), "recordedBy": features_by,
        }),
    );
    advance(&mut t, rng, 600, 7200);
    let bag = items(rng);
    let dji_officer = officer(rng, "dji");
    let locker = rng.random_range(1..400);
    add(
        t,
        "dji",
        "baggage",
        json!({
            "vNumber": v, "pieces": bag.len(), "totalWeightKg": weight + 1.5, "items": bag, "phase": "detention",
            "storageLocation": format!("{detention}, depot locker {locker}"), "instructionVersion": "2018-05",
            "registeredAt": stamp(t), "registeredBy": dji_officer,
        }),
    );

    // Transport and departure.
    advance(&mut t, rng, 86_400, 5 * 86_400);
    let transport_id = format!("dvo-transport-{v}-1");
    let level = ["low", "medium", "high"][rng.random_range(0..3)];
    let officers = if forced { 2 } else { 0 };
    let escort_kind = if forced { "forced" } else { "independent" };
    let planner = format!("dvo-planner-{:04}", rng.random_range(1..999));
    let base = json!({
        "vNumber": v, "transportId": transport_id, "fromLocation": detention, "toLocation": "Schiphol",
        "departureKind": escort_kind,
        "escort": {"escorted": forced, "by": "kmar", "officers": officers},
        "riskAssessment": {"done": true, "level": level, "assessedAt": stamp(t), "assessedBy": planner},
        "search": {"searched": forced, "by": "dji", "authority": "statutory search power (synthetic)", "searchedAt": stamp(t)},
        "dangerousItemsFound": false, "plannedAt": stamp(t + 86_400 * 1_000_000),
    });
    let with = |extra: Value| {
        let mut d = base.clone();
        if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                d.insert(k.clone(), v.clone());
            }
        }
        d
    };
    add(t, "dvo", "transport-status", with(json!({"status": "planned"})));
    advance(&mut t, rng, 3600, 86_400);
    // In about one case in seven a new legal procedure cancels the removal.
    if rng.random_bool(0.14) {
        add(
            t,
            "dvo",
            "transport-status",
            with(json!({"status": "cancelled", "cancellationReason": "new-legal-procedure"})),
        );
        return plan;
    }
    let medic = dji_officer.replace("officer", "doctor");
    add(
        t,
        "dji",
        "medical-file-transfer",
        json!({
            "vNumber": v, "reason": "removal",
            "fromCareProfessional": {"partner": "dji", "role": "medical-service", "name": medic},
            "toCareProfessional": {"partner": "kmar", "role": "medical-service", "name": "kmar-medical-desk"},
            "fileReference": format!("dji-medfile-{v}"), "consentId": consent_id,
            "fitToFly": "fit", "medicationDuringTransport": [], "attentionPoints": ["afraid of flying: explain each step in advance"],
            "transferredAt": stamp(t),
        }),
    );
    advance(&mut t, rng, 600, 3600);
    add(t, "dvo", "transport-status", with(json!({"status": "departed", "departedAt": stamp(t)})));
    advance(&mut t, rng, 1800, 7200);
    add(
        t,
        "kmar",
        "transport-status",
        with(json!({"status": "handed-over", "departedAt": stamp(t - 3_600_000_000), "arrivedAt": stamp(t)})),
    );
    plan
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

/// Writes the log; returns the number of events.
pub fn generate(options: &GenOptions, out: &mut dyn Write) -> Result<u64, Error> {
    let registry = Registry::embedded().map_err(Error::Schemas)?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut plan = Vec::new();
    for case in 0..options.cases {
        plan.extend(case_plan(&mut rng, case, options.start));
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
    Ok(count)
}
