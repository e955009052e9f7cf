//! One synthetic case's events: reception (coa registers baggage, gza the consent and the
//! medical file), the transport to detention (dvo), detention (dtv records features, dji
//! registers baggage), and the departure (dvo plans; dji re-registers baggage and hands the
//! medical file to the escort; dvo departs; kmar hands over), or a cancellation. Planted
//! handover gaps ([`Gaps`]) change what happens before a handover, and are recorded.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::{Gaps, Planned, Planted};

/// The handover kinds and item names of the built-in expectations (schemas/chain/).
pub const TO_DETENTION: &str = "reception-to-detention";
pub const TO_DEPARTURE: &str = "detention-to-departure";

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

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

/// The events of one case in the order they happen.
struct Events {
    case: u32,
    t: i64,
    plan: Vec<Planned>,
}

impl Events {
    fn add(&mut self, source: &'static str, event_type: &'static str, data: Value) {
        let step = self.plan.len() as u32 + 1;
        self.plan.push(Planned { received: self.t, case: self.case, step, source, event_type, data });
    }

    /// Moves the clock on by lo..hi seconds.
    fn advance(&mut self, rng: &mut ChaCha8Rng, lo: i64, hi: i64) {
        self.t += rng.random_range(lo..hi) * SECOND;
    }
}

fn officer(rng: &mut ChaCha8Rng, who: &str) -> String {
    format!("{who}-officer-{:04}", rng.random_range(1..9999))
}

fn items(rng: &mut ChaCha8Rng) -> Vec<Value> {
    let n = rng.random_range(2..6);
    let mut chosen: Vec<_> = ITEM_TEXT.choose_multiple(rng, n).collect();
    chosen.sort();
    chosen.into_iter().map(|(c, d)| json!({"category": c, "description": d})).collect()
}

fn baggage(v: &str, bag: Vec<Value>, weight: f64, phase: &str, storage: String, at: i64, by: String) -> Value {
    json!({
        "vNumber": v, "pieces": bag.len(), "totalWeightKg": weight, "items": bag, "phase": phase,
        "storageLocation": storage, "instructionVersion": "2018-05", "registeredAt": stamp(at), "registeredBy": by,
    })
}

/// A transport leg's status with everything a departed leg needs; `assessor` is the
/// planner and the risk level they assessed.
fn transport(v: &str, id: &str, route: (&str, &str), forced: bool, assessed: i64, assessor: (&str, &str)) -> Value {
    json!({
        "vNumber": v, "transportId": id, "fromLocation": route.0, "toLocation": route.1,
        "departureKind": if forced { "forced" } else { "independent" },
        "escort": if forced { json!({"escorted": true, "by": "kmar", "officers": 2}) } else { json!({"escorted": false}) },
        "riskAssessment": {"done": true, "level": assessor.1, "assessedAt": stamp(assessed), "assessedBy": assessor.0},
        "search": {"searched": forced, "by": "dji", "authority": "statutory search power (synthetic)", "searchedAt": stamp(assessed)},
        "dangerousItemsFound": false, "plannedAt": stamp(assessed + DAY * SECOND),
    })
}

fn with(base: &Value, extra: Value) -> Value {
    let mut d = base.clone();
    if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            d.insert(k.clone(), v.clone());
        }
    }
    d
}

/// Case number `case` (its V-number 9999 followed by six digits of `number`).
pub(super) fn case_plan(
    rng: &mut ChaCha8Rng,
    case: u32,
    number: u32,
    start: i64,
    gaps: &Gaps,
    planted: &mut Planted,
) -> Vec<Planned> {
    let v = format!("9999{number:06}");
    let t = start * SECOND + i64::from(case) * rng.random_range(20..90) * SECOND;
    let mut e = Events { case, t, plan: Vec::new() };
    let reception = *LOCATIONS.choose(rng).expect("non-empty");
    let detention = *DETENTION.choose(rng).expect("non-empty");
    let consent_id = format!("consent-{v}-1");
    let forced = rng.random_bool(0.7);
    // The planted gaps of this case, drawn up front so each rate is its own coin.
    let no_consent = rng.random_bool(gaps.no_consent);
    let no_features = rng.random_bool(gaps.missing_features);
    let late_baggage = rng.random_bool(gaps.late_baggage);

    // Reception: baggage registered by coa, consent signed at the care provider.
    let weight = f64::from(rng.random_range(80..320)) / 10.0;
    let (bag, by) = (items(rng), officer(rng, "coa"));
    e.add("coa", "baggage", baggage(&v, bag, weight, "reception", format!("{reception}, luggage room"), e.t, by));
    e.advance(rng, 600, 2 * HOUR);
    let language = *LANGUAGES.choose(rng).expect("non-empty");
    let interpreter = rng.random_bool(0.6);
    if !no_consent {
        e.add(
            "gza",
            "medical-transfer-consent",
            json!({
                "vNumber": v, "consentId": consent_id, "given": true,
                "recipients": [{"partner": "dji", "role": "medical-service"}, {"partner": "kmar", "role": "medical-service"}],
                "signedAt": stamp(e.t), "validUntil": stamp(e.t + 180 * DAY * SECOND), "interpreterUsed": interpreter,
                "formLanguage": language,
            }),
        );
    }
    e.advance(rng, HOUR, DAY);
    let gza_doctor = format!("gza-doctor-{:04}", rng.random_range(1..999));
    e.add(
        "gza",
        "medical-file-transfer",
        json!({
            "vNumber": v, "reason": "to-detention",
            "fromCareProfessional": {"partner": "gza", "role": "general-practitioner", "name": gza_doctor},
            "toCareProfessional": {"partner": "dji", "role": "medical-service", "name": "dji-medical-desk"},
            "fileReference": format!("gza-medfile-{v}"), "consentId": consent_id, "fitToFly": "not-assessed",
            "medicationDuringTransport": [], "attentionPoints": ["needs glasses for reading", "prefers a female doctor"],
            "transferredAt": stamp(e.t),
        }),
    );

    // The move to detention: a handover to dji. An open location has no search powers.
    e.advance(rng, HOUR, 6 * HOUR);
    let level = ["low", "medium", "high"][rng.random_range(0..3)];
    let planner = format!("dvo-planner-{:04}", rng.random_range(1..999));
    let leg = format!("dvo-transport-{v}-0");
    let to_detention = transport(&v, &leg, (reception, detention), true, e.t - HOUR * SECOND, (&planner, level));
    let mut to_detention = with(&to_detention, json!({"status": "departed", "departedAt": stamp(e.t)}));
    to_detention["search"] = json!({"searched": false});
    e.add("dvo", "transport-status", to_detention);
    planted.handover(TO_DETENTION, if no_consent { &[("medical-file", "gza", "unmet")] } else { &[] });

    // Detention: dtv records features, dji registers baggage again.
    e.advance(rng, HOUR, 12 * HOUR);
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
    if !no_features {
        e.add(
            "dtv",
            "physical-features",
            json!({
                "vNumber": v, "height": height, "build": build, "eyeColour": eyes, "hairColour": hair,
                "distinguishingMarks": marks, "photoReference": format!("dtv-photo-{v}"),
                "recordedAt": stamp(e.t), "recordedBy": features_by,
            }),
        );
    }
    e.advance(rng, 600, 2 * HOUR);
    let dji_officer = officer(rng, "dji");
    let locker = rng.random_range(1..400);
    let storage = format!("{detention}, depot locker {locker}");
    e.add(
        "dji",
        "baggage",
        baggage(&v, items(rng), weight + 1.5, "detention", storage.clone(), e.t, dji_officer.clone()),
    );

    // Departure, at least two days later: the detention registration is stale by then.
    e.advance(rng, 2 * DAY + HOUR, 5 * DAY);
    let leg = format!("dvo-transport-{v}-1");
    let base = transport(&v, &leg, (detention, "Schiphol"), forced, e.t, (&planner, level));
    e.add("dvo", "transport-status", with(&base, json!({"status": "planned"})));
    e.advance(rng, HOUR, DAY);
    // In about one case in seven a new legal procedure cancels the removal.
    if rng.random_bool(0.14) {
        e.add(
            "dvo",
            "transport-status",
            with(&base, json!({"status": "cancelled", "cancellationReason": "new-legal-procedure"})),
        );
        return e.plan;
    }
    let departure_bag = baggage(&v, items(rng), weight + 0.5, "transport", storage, e.t, dji_officer.clone());
    if !late_baggage {
        e.add("dji", "baggage", departure_bag.clone());
        e.advance(rng, 600, HOUR);
    }
    let medic = dji_officer.replace("officer", "doctor");
    e.add(
        "dji",
        "medical-file-transfer",
        json!({
            "vNumber": v, "reason": "removal",
            "fromCareProfessional": {"partner": "dji", "role": "medical-service", "name": medic},
            "toCareProfessional": {"partner": "kmar", "role": "medical-service", "name": "kmar-medical-desk"},
            "fileReference": format!("dji-medfile-{v}"), "consentId": consent_id,
            "fitToFly": "fit", "medicationDuringTransport": [], "attentionPoints": ["afraid of flying: explain each step in advance"],
            "transferredAt": stamp(e.t),
        }),
    );
    e.advance(rng, 600, HOUR);
    e.add("dvo", "transport-status", with(&base, json!({"status": "departed", "departedAt": stamp(e.t)})));
    let departed = e.t;
    if forced {
        let mut gaps: Vec<(&str, &str, &str)> = Vec::new();
        if late_baggage {
            gaps.push(("baggage-registered", "dji", "stale"));
        }
        if no_features {
            gaps.push(("physical-features", "dtv", "missing"));
        }
        if no_consent {
            gaps.push(("medical-file", "dji", "unmet"));
        }
        planted.handover(TO_DEPARTURE, &gaps);
    }
    if late_baggage {
        // Registered after the person left: too late for the escort.
        e.advance(rng, 600, 2 * HOUR);
        e.add("dji", "baggage", with(&departure_bag, json!({"registeredAt": stamp(e.t)})));
    }
    e.advance(rng, 1800, 7200);
    e.add(
        "kmar",
        "transport-status",
        with(&base, json!({"status": "handed-over", "departedAt": stamp(departed), "arrivedAt": stamp(e.t)})),
    );
    e.plan
}
