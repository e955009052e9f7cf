//! The built-in expectations on hand-made cases: ready with everything there; each gap
//! named with its item, partner and kind of problem.

use serde_json::{json, Value};

use super::*;

const TYPES: &[&str] =
    &["transport-status", "baggage", "physical-features", "medical-file-transfer", "medical-transfer-consent"];
const HOUR: i64 = 3_600_000_000;

struct Case {
    state: CaseState,
    set: HandoverSet,
    sequence: u64,
}

impl Case {
    fn new() -> Case {
        Case { state: CaseState::default(), set: HandoverSet::embedded(TYPES).unwrap(), sequence: 0 }
    }

    /// Observes an event at `hour`; returns the handovers it triggered.
    fn add(&mut self, hour: i64, source: &str, event_type: &str, data: Value) -> Vec<HandoverOutcome> {
        self.sequence += 1;
        // Received now, but happened at `hour`: freshness goes by the events' own times.
        let e = Observed {
            sequence: self.sequence,
            received_at_micros: 1_000 * HOUR + self.sequence as i64,
            time_micros: Some(hour * HOUR),
            event_type,
            source,
            data: &data,
        };
        let outcomes = self.set.evaluate(&self.state, &e);
        self.state.observe(&e, &self.set.members);
        outcomes
    }
}

fn consent(recipients: &[&str]) -> Value {
    let r: Vec<Value> = recipients.iter().map(|p| json!({"partner": p, "role": "medical-service"})).collect();
    json!({"consentId": "c1", "given": true, "signedAt": "2026-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z", "recipients": r})
}

fn departure() -> Value {
    json!({"status": "departed", "toLocation": "Schiphol", "fromLocation": "detention centre Zeist", "departureKind": "forced",
           "riskAssessment": {"done": true, "level": "low"}, "search": {"searched": true, "by": "dji", "authority": "x"}})
}

/// Everything the departure needs, the last baggage registration at `baggage_hour`.
fn prepared(baggage_hour: i64, instruction: &str) -> Case {
    let mut case = Case::new();
    case.add(1, "gza", "medical-transfer-consent", consent(&["dji", "kmar"]));
    case.add(2, "dtv", "physical-features", json!({"photoReference": "p", "height": 170}));
    case.add(
        3,
        "dji",
        "medical-file-transfer",
        json!({"consentId": "c1", "toCareProfessional": {"partner": "kmar", "role": "m"}}),
    );
    case.add(baggage_hour, "dji", "baggage", json!({"pieces": 1, "instructionVersion": instruction}));
    case
}

fn gaps(outcome: &HandoverOutcome) -> Vec<(String, String, ItemStatus)> {
    outcome.gaps().map(|g| (g.item.clone(), g.partner.clone(), g.status)).collect()
}

fn gap(item: &str, partner: &str, status: ItemStatus) -> Vec<(String, String, ItemStatus)> {
    vec![(item.to_owned(), partner.to_owned(), status)]
}

#[test]
fn a_departure_with_everything_is_ready() {
    let mut case = prepared(40, "2018-05");
    let outcomes = case.add(50, "dvo", "transport-status", departure());
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert_eq!(
        (o.kind.as_str(), o.receiver.as_str(), o.trigger_source.as_str()),
        ("detention-to-departure", "kmar", "dvo")
    );
    assert!(o.ready(), "{o:#?}");
    let items: Vec<&str> = o.items.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(items, ["baggage-registered", "physical-features", "risk-assessed", "searched", "medical-file"]);
    // The state keeps what the expectations read, not the payload.
    assert!(case.state.latest("baggage", "dji").unwrap().data.get("pieces").is_none());
}

#[test]
fn each_gap_is_named_with_its_partner() {
    let stale = prepared(1, "2018-05").add(50, "dvo", "transport-status", departure());
    assert_eq!(gaps(&stale[0]), gap("baggage-registered", "dji", ItemStatus::Stale));

    let old = prepared(40, "2016-01").add(50, "dvo", "transport-status", departure());
    assert_eq!(gaps(&old[0]), gap("baggage-registered", "dji", ItemStatus::Unmet));

    let mut no_features = Case::new();
    no_features.add(1, "gza", "medical-transfer-consent", consent(&["dji", "kmar"]));
    no_features.add(
        3,
        "dji",
        "medical-file-transfer",
        json!({"consentId": "c1", "toCareProfessional": {"partner": "kmar", "role": "m"}}),
    );
    no_features.add(40, "dji", "baggage", json!({"instructionVersion": "2018-05"}));
    let o = no_features.add(50, "dvo", "transport-status", departure());
    assert_eq!(gaps(&o[0]), gap("physical-features", "dtv", ItemStatus::Missing));

    let mut unsearched = departure();
    unsearched["search"] = json!({"searched": false});
    let o = prepared(40, "2018-05").add(50, "dvo", "transport-status", unsearched);
    assert_eq!(gaps(&o[0]), gap("searched", "dvo", ItemStatus::Unmet));

    // A consent that does not name the escort does not cover the hand-over of the file.
    let mut narrow = prepared(40, "2018-05");
    narrow.add(45, "gza", "medical-transfer-consent", consent(&["dji"]));
    let o = narrow.add(50, "dvo", "transport-status", departure());
    assert_eq!(gaps(&o[0]), gap("medical-file", "dji", ItemStatus::Unmet));
}

#[test]
fn medical_items_are_due_only_with_a_medical_file_and_other_transports_trigger_nothing() {
    let mut case = Case::new();
    case.add(1, "dtv", "physical-features", json!({"photoReference": "p"}));
    case.add(2, "dji", "baggage", json!({"instructionVersion": "2018-05"}));
    let o = case.add(3, "dvo", "transport-status", departure());
    assert!(o[0].ready() && o[0].items.iter().all(|i| i.item != "medical-file"), "{o:#?}");
    let mut planned = departure();
    planned["status"] = json!("planned");
    assert!(case.add(4, "dvo", "transport-status", planned).is_empty());
    let mut independent = departure();
    independent["departureKind"] = json!("independent");
    assert!(case.add(5, "dvo", "transport-status", independent).is_empty());
    let to_detention =
        json!({"status": "departed", "toLocation": "detention centre Zeist", "riskAssessment": {"done": true}});
    let o = case.add(6, "dvo", "transport-status", to_detention);
    assert_eq!(o[0].kind, "reception-to-detention");
    assert_eq!(gaps(&o[0]), gap("baggage-registered", "coa", ItemStatus::Missing));
}
