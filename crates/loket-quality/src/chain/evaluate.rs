//! Handover readiness: at a trigger, every due item of every handover kind it triggers is
//! met, missing, stale or unmet, and attributed to the partner that should have supplied
//! it. Pure: a function of the case state before the trigger and the trigger itself.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::case::{CaseState, LatestEvent, Observed};
use super::config::{Handover, HandoverSet, Item};
use crate::reads::DATA;

/// How an item stood at a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Met,
    /// No event of the type from the partner before the trigger.
    Missing,
    /// There was one, older than the item's `max_age_hours` (by the events' own times).
    Stale,
    /// There was one, but the item's expression does not hold (or cannot be evaluated).
    Unmet,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Met => "met",
            ItemStatus::Missing => "missing",
            ItemStatus::Stale => "stale",
            ItemStatus::Unmet => "unmet",
        }
    }
}

/// One due item at one handover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOutcome {
    pub item: String,
    /// The partner that should have supplied it.
    pub partner: String,
    /// The event type it concerns (the trigger's for items on the trigger).
    pub event_type: String,
    pub status: ItemStatus,
    /// Why an unmet item could not be evaluated; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One evaluated handover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverOutcome {
    pub kind: String,
    pub receiver: String,
    pub trigger_sequence: u64,
    pub trigger_type: String,
    pub trigger_source: String,
    /// When the gateway received the trigger, Unix µs.
    pub at_micros: i64,
    /// Every due item, in declaration order.
    pub items: Vec<ItemOutcome>,
}

impl HandoverOutcome {
    pub fn ready(&self) -> bool {
        self.items.iter().all(|i| i.status == ItemStatus::Met)
    }

    /// The items that are not met.
    pub fn gaps(&self) -> impl Iterator<Item = &ItemOutcome> {
        self.items.iter().filter(|i| i.status != ItemStatus::Met)
    }
}

/// CEL's standard library, built once (building it costs more than evaluating).
fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// An event as expressions see it: `time` is its own time, else when it was received.
fn event_value(event_type: &str, source: &str, received_at: i64, at: i64, data: &Map<String, Value>) -> Value {
    let text = |micros| loket_domain::time::rfc3339(micros).unwrap_or_default();
    json!({"type": event_type, "source": source, "receivedAt": text(received_at), "time": text(at), "data": data})
}

fn latest_value(l: &LatestEvent) -> Value {
    event_value(&l.event_type, &l.source, l.received_at_micros, l.at_micros, &l.data)
}

/// Whether `program` gives `true`; anything else is `Err` with the reason, or `Ok(false)`.
fn holds(program: &cel::Program, vars: &[(&str, &Value)]) -> Result<bool, String> {
    let mut context = cel::Context::with_env(env());
    for (name, value) in vars {
        context.add_variable(*name, *value).map_err(|e| format!("cannot pass {name}: {e}"))?;
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the expression gave {other:?}, not a boolean")),
        Err(e) => Err(format!("the expression could not be evaluated: {e}")),
    }
}

impl HandoverSet {
    /// The handovers `trigger` is, evaluated on `state`: the case just before it.
    pub fn evaluate(&self, state: &CaseState, trigger: &Observed<'_>) -> Vec<HandoverOutcome> {
        let candidates: Vec<&Handover> =
            self.handovers.iter().filter(|h| h.trigger_type == trigger.event_type).collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let data: Map<String, Value> = match trigger.data {
            Value::Object(o) => self.members.iter().filter_map(|m| Some((m.clone(), o.get(m)?.clone()))).collect(),
            _ => Map::new(),
        };
        let payload = Value::Object(data.clone());
        let trigger_value =
            event_value(trigger.event_type, trigger.source, trigger.received_at_micros, trigger.at_micros(), &data);
        let case = Value::Array(state.latest.iter().map(latest_value).collect());
        let mut out = Vec::new();
        for handover in candidates {
            // A trigger condition that cannot be evaluated is not a handover: nothing to count.
            if holds(&handover.when, &[(DATA, &payload)]) != Ok(true) {
                continue;
            }
            let items = handover
                .items
                .iter()
                .filter_map(|item| item_outcome(item, state, trigger, &trigger_value, &case))
                .collect();
            out.push(HandoverOutcome {
                kind: handover.kind.clone(),
                receiver: handover.receiver.clone(),
                trigger_sequence: trigger.sequence,
                trigger_type: trigger.event_type.to_owned(),
                trigger_source: trigger.source.to_owned(),
                at_micros: trigger.received_at_micros,
                items,
            });
        }
        out
    }
}

/// The outcome of one item, or `None` when it is not due.
fn item_outcome(
    item: &Item,
    state: &CaseState,
    trigger: &Observed<'_>,
    trigger_value: &Value,
    case: &Value,
) -> Option<ItemOutcome> {
    let (partner, event_type, found) = match &item.source {
        Some(s) => (s.partner.as_str(), s.event_type.as_str(), state.latest(&s.event_type, &s.partner)),
        None => (trigger.source, trigger.event_type, None),
    };
    let event_value = found.map(latest_value);
    let event = event_value.as_ref().unwrap_or(trigger_value);
    let vars = [("trigger", trigger_value), ("event", event), ("case", case)];
    let mut outcome = ItemOutcome {
        item: item.name.clone(),
        partner: partner.to_owned(),
        event_type: event_type.to_owned(),
        status: ItemStatus::Met,
        error: String::new(),
    };
    // An `applies` that cannot be evaluated keeps the item due: not knowing is no excuse.
    if holds(&item.applies, &vars) == Ok(false) {
        return None;
    }
    if item.source.is_some() && found.is_none() {
        outcome.status = ItemStatus::Missing;
        return Some(outcome);
    }
    if let (Some(max), Some(found)) = (item.max_age_micros, found) {
        if trigger.at_micros() - found.at_micros > max {
            outcome.status = ItemStatus::Stale;
            return Some(outcome);
        }
    }
    match holds(&item.expr, &vars) {
        Ok(true) => {}
        Ok(false) => outcome.status = ItemStatus::Unmet,
        Err(e) => {
            outcome.status = ItemStatus::Unmet;
            outcome.error = e;
        }
    }
    Some(outcome)
}
