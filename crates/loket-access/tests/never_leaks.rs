//! Property: over randomly generated policies (with consent registrars) and journals (with
//! publishers, addressees and named consents), no subscriber ever receives a type it is
//! not granted, a field its rule does not let through, or medical data that is not its
//! own, not addressed to it, or not covered at that moment by the consent it names (a form
//! counting only from a registrar, and only as its first registrar left it); nothing it is
//! entitled to is dropped (every such event is delivered once, or is still withheld at the
//! end), and a publisher is never withheld from its own event. A tester's export of every
//! event carries no case id and no medical text, and keeps every payload's shape.
//!
//! The checks use their own, naive reading of the rules (an oracle), not the crate's code.

use std::collections::{BTreeMap, BTreeSet};

use loket_access::{
    AccessConfig, EventFacts, FieldsConfig, PartnerConfig, Policy, Pseudonymiser, Step, SubscriberScan, Verdict,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const PARTNERS: &[&str] = &["p0", "p1", "p2", "p3"];
const TYPES: &[&str] = &["plain", "mixed", "med", "medical-transfer-consent"];
/// V-numbers, so that the export check can look for them.
const CASES: &[&str] = &["9999000000", "9999000001"];
/// Fields of the plain, mixed and med types (one schema for all three).
const POINTERS: &[&str] = &["/a", "/b", "/n", "/n/x", "/n/y", "/items", "/items/k", "/items/v"];
/// The medical field of `mixed`.
const MEDICAL_FIELD: &str = "/n/x";
const SECOND: i64 = 1_000_000;
const BASE: i64 = 1_700_000_000;

fn schema() -> Value {
    json!({"properties": {
        "vNumber": {}, "a": {}, "b": {},
        "n": {"properties": {"x": {}, "y": {}}},
        "items": {"type": "array", "items": {"properties": {"k": {}, "v": {}}}},
        "consentId": {}, "given": {}, "recipients": {}, "signedAt": {}, "validUntil": {}, "withdrawnAt": {},
        "toCareProfessional": {"properties": {"partner": {"type": "string", "pattern": "^p[0-9]$"}}}
    }})
}

fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).unwrap().format(&Rfc3339).unwrap()
}

#[derive(Debug, Clone)]
enum Rule {
    All,
    Allow(Vec<String>),
    Deny(Vec<String>),
}

fn rule() -> impl Strategy<Value = Rule> {
    let pointers = proptest::sample::subsequence(POINTERS.to_vec(), 0..4)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
    prop_oneof![Just(Rule::All), pointers.clone().prop_map(Rule::Allow), pointers.prop_map(Rule::Deny)]
}

fn grants() -> impl Strategy<Value = BTreeMap<String, Rule>> {
    proptest::collection::btree_map(proptest::sample::select(TYPES.to_vec()).prop_map(str::to_owned), rule(), 0..4)
}

#[derive(Debug, Clone)]
enum Ev {
    Data {
        event_type: &'static str,
        source: &'static str,
        case: &'static str,
        /// `toCareProfessional.partner`.
        addressee: Option<&'static str>,
        /// `consentId`: the form it travels under.
        named: Option<u8>,
        data: Value,
    },
    Consent {
        source: &'static str,
        case: &'static str,
        id: u8,
        given: bool,
        recipients: Vec<&'static str>,
        signed: i64,
        valid: Option<i64>,
        withdrawn: Option<i64>,
    },
}

fn payload() -> impl Strategy<Value = Value> {
    (any::<bool>(), any::<bool>(), proptest::option::of((any::<bool>(), any::<bool>())), 0usize..3).prop_map(
        |(a, b, n, items)| {
            let mut m = Map::new();
            if a {
                m.insert("a".into(), json!("A"));
            }
            if b {
                m.insert("b".into(), json!(2));
            }
            if let Some((x, y)) = n {
                let mut inner = Map::new();
                if x {
                    inner.insert("x".into(), json!("diagnosis"));
                }
                if y {
                    inner.insert("y".into(), json!(true));
                }
                m.insert("n".into(), Value::Object(inner));
            }
            if items > 0 {
                m.insert("items".into(), json!((0..items).map(|i| json!({"k": i, "v": "v"})).collect::<Vec<_>>()));
            }
            Value::Object(m)
        },
    )
}

fn event() -> impl Strategy<Value = Ev> {
    let data = (
        proptest::sample::select(vec!["plain", "mixed", "med"]),
        proptest::sample::select(PARTNERS.to_vec()),
        proptest::sample::select(CASES.to_vec()),
        proptest::option::weighted(0.8, proptest::sample::select(PARTNERS.to_vec())),
        proptest::option::weighted(0.8, 0u8..2),
        payload(),
    )
        .prop_map(|(event_type, source, case, addressee, named, data)| Ev::Data {
            event_type,
            source,
            case,
            addressee,
            named,
            data,
        });
    let consent = (
        proptest::sample::select(PARTNERS.to_vec()),
        proptest::sample::select(CASES.to_vec()),
        0u8..2,
        proptest::bool::weighted(0.8),
        proptest::sample::subsequence(PARTNERS.to_vec(), 0..4),
        -20i64..20,
        proptest::option::of(-10i64..40),
        proptest::option::of(-10i64..40),
    )
        .prop_map(|(source, case, id, given, recipients, signed, valid, withdrawn)| Ev::Consent {
            source,
            case,
            id,
            given,
            recipients,
            signed,
            valid,
            withdrawn,
        });
    prop_oneof![3 => data, 2 => consent]
}

/// A stored event: (sequence, type, case, received at µs, payload, source).
type Stored = (u64, String, String, i64, Value, &'static str);

fn materialise(events: &[(Ev, i64)]) -> Vec<Stored> {
    let mut at = BASE * SECOND;
    let mut out = Vec::new();
    for (i, (ev, step)) in events.iter().enumerate() {
        at += step * SECOND;
        let now = at / SECOND;
        let (t, source, case, mut data) = match ev {
            Ev::Data { event_type, source, case, addressee, named, data } => {
                let mut data = data.clone();
                if let Some(to) = addressee {
                    data["toCareProfessional"] = json!({"partner": to, "role": "r"});
                }
                if let Some(id) = named {
                    data["consentId"] = json!(format!("f{id}"));
                }
                ((*event_type).to_owned(), *source, *case, data)
            }
            Ev::Consent { source, case, id, given, recipients, signed, valid, withdrawn } => {
                let mut c = json!({"consentId": format!("f{id}"), "given": given,
                    "recipients": recipients.iter().map(|p| json!({"partner": p, "role": "r"})).collect::<Vec<_>>(),
                    "signedAt": rfc3339(now + signed)});
                if let Some(v) = valid {
                    c["validUntil"] = json!(rfc3339(now + v));
                }
                if let Some(w) = withdrawn {
                    c["withdrawnAt"] = json!(rfc3339(now + w));
                }
                ("medical-transfer-consent".to_owned(), *source, *case, c)
            }
        };
        data["vNumber"] = json!(case);
        out.push((i as u64 + 1, t, case.to_owned(), at, data, source));
    }
    out
}

fn secs(v: &Value, key: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(v.get(key)?.as_str()?, &Rfc3339).ok()?;
    Some(t.unix_timestamp() * SECOND)
}

/// Oracle: does the consent `named` of `case` (any form when `None`) among `prefix` cover
/// `partner` at `at`? A form counts only from a registrar; its first registrar owns it and
/// only that registrar's later events change it.
fn covered(prefix: &[Stored], registrars: &[&str], case: &str, named: Option<&str>, partner: &str, at: i64) -> bool {
    let mut forms: BTreeMap<String, (&str, &Value)> = BTreeMap::new();
    for (_, t, c, _, data, source) in prefix {
        if t == "medical-transfer-consent" && c == case && registrars.contains(source) {
            let id = data["consentId"].as_str().unwrap().to_owned();
            match forms.get(&id) {
                Some((owner, _)) if owner != source => {}
                _ => {
                    forms.insert(id, (source, data));
                }
            }
        }
    }
    forms.iter().filter(|(id, _)| named.is_none_or(|n| n == id.as_str())).any(|(_, (_, f))| {
        f["given"] == json!(true)
            && f["recipients"].as_array().unwrap().iter().any(|r| r["partner"] == json!(partner))
            && secs(f, "signedAt").is_some_and(|s| s <= at)
            && secs(f, "validUntil").is_none_or(|v| v > at)
            && secs(f, "withdrawnAt").is_none_or(|w| w > at)
    })
}

/// Oracle: is medical data of `data` (type `t`) addressed to `partner`? A `med` event must
/// name its addressee; `mixed` binds only when it names one.
fn addressed(t: &str, data: &Value, partner: &str) -> bool {
    match data.pointer("/toCareProfessional/partner").and_then(Value::as_str) {
        Some(a) => a == partner,
        None => t != "med",
    }
}

fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => m.iter().for_each(|(k, c)| leaves(c, &format!("{path}/{k}"), out)),
        Value::Array(items) if !items.is_empty() => items.iter().for_each(|i| leaves(i, path, out)),
        _ => out.push(path.to_owned()),
    }
}

fn under(path: &str, pointer: &str) -> bool {
    path == pointer || path.starts_with(&format!("{pointer}/"))
}

/// Oracle: may a leaf at `path` (or an emptied container there) pass `rule`?
fn passes(rule: &Rule, path: &str) -> bool {
    match rule {
        Rule::All => true,
        Rule::Allow(list) => path == "/vNumber" || list.iter().any(|p| under(path, p) || under(p, path)),
        Rule::Deny(list) => !list.iter().any(|p| under(path, p)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_subscriber_receives_what_it_is_not_entitled_to(
        policy_grants in proptest::collection::vec(grants(), PARTNERS.len()),
        filters in proptest::collection::vec(proptest::sample::subsequence(TYPES.to_vec(), 0..3), PARTNERS.len()),
        events in proptest::collection::vec((event(), 0i64..15), 1..40),
        registrars in proptest::sample::subsequence(PARTNERS.to_vec(), 0..4),
        export_key in any::<[u8; 16]>(),
    ) {
        let partners: BTreeMap<String, PartnerConfig> = PARTNERS.iter().zip(&policy_grants).map(|(p, g)| {
            let subscribe = g.iter().map(|(t, r)| (t.clone(), match r {
                Rule::All => FieldsConfig::default(),
                Rule::Allow(l) => FieldsConfig { allow: Some(l.clone()), deny: None },
                Rule::Deny(l) => FieldsConfig { allow: None, deny: Some(l.clone()) },
            })).collect();
            ((*p).to_owned(), PartnerConfig { identity: None, oin: None, system: None, publish: vec![], subscribe })
        }).collect();
        let access = AccessConfig {
            auditors: vec![],
            medical_types: vec!["med".into()],
            medical_fields: [("mixed".to_owned(), vec![MEDICAL_FIELD.to_owned()])].into(),
            consent_registrars: registrars.iter().map(|r| (*r).to_owned()).collect(),
        };
        let policy = Policy::compile(&access, &partners, &|t: &str| {
            if TYPES.contains(&t) { vec![schema()] } else { vec![] }
        }).unwrap();
        let journal = materialise(&events);

        for (i, partner) in PARTNERS.iter().enumerate() {
            let filter: BTreeSet<String> = filters[i].iter().map(|t| (*t).to_owned()).collect();
            let mut scan = SubscriberScan::new(*partner, filter.clone());
            // (sequence, judged at, data)
            let mut delivered: Vec<(u64, i64, Value)> = Vec::new();
            for (pos, (seq, t, case, at, data, source)) in journal.iter().enumerate() {
                let facts = EventFacts { sequence: *seq, event_type: t, source, subject: case, received_at_micros: *at, data };
                let new = delivered.len();
                let (step, released) = scan.step(&policy, &facts);
                if let Step::Deliver { data, .. } = step {
                    delivered.push((*seq, *at, data));
                }
                for r in released {
                    let (rs, rt, rc, rat, rd, rsrc) = &journal[(r - 1) as usize];
                    prop_assert!(r < *seq);
                    let facts = EventFacts { sequence: *rs, event_type: rt, source: rsrc, subject: rc, received_at_micros: *rat, data: rd };
                    match scan.release(&policy, &facts, *at) {
                        Verdict::Deliver { data, .. } => delivered.push((r, *at, data)),
                        other => prop_assert!(false, "released but not deliverable: {:?}", other),
                    }
                }
                // What this step delivered, judged against the journal prefix up to here.
                for (dseq, judged_at, data) in &delivered[new..] {
                    let (_, dt, dcase, _, stored, dsource) = &journal[(*dseq - 1) as usize];
                    let rule = &policy_grants[i].get(dt);
                    prop_assert!(rule.is_some(), "{} got {} without a grant", partner, dt);
                    prop_assert!(filter.is_empty() || filter.contains(dt), "{} got unrequested {}", partner, dt);
                    let rule = rule.unwrap();
                    let mut paths = Vec::new();
                    leaves(data, "", &mut paths);
                    for p in &paths {
                        prop_assert!(p.is_empty() || passes(rule, p), "{} / {}: field {} leaked under {:?}", partner, dt, p, rule);
                    }
                    let medical = dt == "med" || (dt == "mixed" && paths.iter().any(|p| under(p, MEDICAL_FIELD)));
                    if medical && dsource != partner {
                        prop_assert!(addressed(dt, stored, partner),
                            "{} got medical {} (seq {}) addressed to another", partner, dt, dseq);
                        let named = stored.get("consentId").and_then(Value::as_str);
                        prop_assert!(covered(&journal[..=pos], &registrars, dcase, named, partner, *judged_at),
                            "{} got medical {} (seq {}) without the covering consent it names", partner, dt, dseq);
                    }
                }
            }
            // Nothing dropped: every entitled event is delivered once or still withheld.
            let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
            for (s, _, _) in &delivered {
                *counts.entry(*s).or_default() += 1;
            }
            for (seq, t, case, _, data, source) in &journal {
                let granted = policy_grants[i].get(t.as_str()).filter(|_| filter.is_empty() || filter.contains(t));
                // Medical data as this subscriber would see it (a `mixed` event only when its
                // rule lets the medical field through), addressed to another: never its.
                let seen_medical = granted.is_some_and(|rule| {
                    t == "med" || (t == "mixed" && data.pointer(MEDICAL_FIELD).is_some() && passes(rule, MEDICAL_FIELD))
                });
                let foreign = seen_medical && source != partner && !addressed(t, data, partner);
                let entitled = granted.is_some() && !foreign;
                let n = counts.get(seq).copied().unwrap_or(0);
                if granted.is_some() && source == partner {
                    prop_assert_eq!(n, 1, "{} was withheld from its own event {}", partner, seq);
                }
                if entitled {
                    prop_assert!(n == 1 || (n == 0 && scan.is_withheld(case, *seq)),
                        "{} event {} ({}) delivered {} times, withheld: {}", partner, seq, t, n, scan.is_withheld(case, *seq));
                } else {
                    prop_assert_eq!(n, 0);
                    prop_assert!(!scan.is_withheld(case, *seq), "{} keeps {} that is never its", partner, seq);
                }
            }
        }

        // A tester's export: every event pseudonymised under one key.
        let pseudonyms = Pseudonymiser::new(&export_key);
        let mut seen = BTreeMap::new();
        for (_, _, case, _, data, _) in &journal {
            let out = pseudonyms.payload(case, data, &schema());
            let text = out.data.to_string();
            for original in CASES {
                prop_assert!(!text.contains(original), "case {} in {}", original, text);
            }
            prop_assert!(!text.contains("diagnosis"), "medical text in {}", text);
            prop_assert_eq!(shape(&out.data), shape(data), "the shape outcomes depend on");
            let v = out.data["vNumber"].as_str().unwrap().to_owned();
            prop_assert!(v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(seen.entry(case.clone()).or_insert_with(|| v.clone()), &v, "one case, one pseudonym");
        }
    }
}

/// What validation and completeness read of a payload: members, string lengths and
/// blankness, every other value.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, c)| (k.clone(), shape(c))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(s) => json!({"chars": s.chars().count(), "blank": s.trim().is_empty()}),
        other => other.clone(),
    }
}
