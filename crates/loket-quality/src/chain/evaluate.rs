//! Handover readiness: at a trigger, every due item of every handover kind it triggers is
//! met, missing, stale or unmet, and attributed to the partner that should have supplied
//! it. Pure: a function of the case state before the trigger and the trigger itself.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::case::{CaseState, LatestEvent, Observed};
use super::config::{Handover, HandoverSet, Item};
use crate::cel_json::{cel_list, cel_map, cel_members, cel_str, cel_string, CelValue, Vars};
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
fn event_value<'a>(
    event_type: &'a str,
    source: &'a str,
    received_at: i64,
    at: i64,
    data: CelValue<'a>,
) -> CelValue<'a> {
    let text = |micros| cel_string(loket_domain::time::rfc3339(micros).unwrap_or_default());
    let members: [(&'a str, CelValue<'a>); 5] = [
        ("type", cel_str(event_type)),
        ("source", cel_str(source)),
        ("receivedAt", text(received_at)),
        ("time", text(at)),
        ("data", data),
    ];
    cel_map(members.into_iter())
}

fn latest_value(l: &LatestEvent) -> CelValue<'_> {
    event_value(&l.event_type, &l.source, l.received_at_micros, l.at_micros, cel_members(&l.data, l.data.keys()))
}

/// Whether `program` gives `true`; anything else is `Err` with the reason, or `Ok(false)`.
fn holds(program: &cel::Program, vars: &Vars<'_>) -> Result<bool, String> {
    let mut context = cel::Context::with_env(env());
    context.set_variable_resolver(vars);
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the expression gave {other:?}, not a boolean")),
        Err(e) => Err(format!("the expression could not be evaluated: {e}")),
    }
}

/// The values items are evaluated on, each converted once per trigger (converting costs
/// more than evaluating) and borrowing from the case state and the trigger: the trigger,
/// the case (every latest event) and, on first use, each latest event an item names.
struct ItemValues<'a> {
    trigger: CelValue<'a>,
    case: CelValue<'a>,
    latest: Vec<Option<CelValue<'a>>>,
    state: &'a CaseState,
}

impl<'a> ItemValues<'a> {
    fn new(state: &'a CaseState, trigger: &Observed<'a>, data: CelValue<'a>) -> Self {
        let trigger =
            event_value(trigger.event_type, trigger.source, trigger.received_at_micros, trigger.at_micros(), data);
        let case = cel_list(state.latest.iter().map(latest_value));
        ItemValues { trigger, case, latest: (0..state.latest.len()).map(|_| None).collect(), state }
    }

    /// Converts `found` on first use; returns where it is kept (`None`: the trigger).
    fn convert(&mut self, found: Option<&LatestEvent>) -> Option<usize> {
        let index = found.and_then(|found| self.state.latest.iter().position(|l| std::ptr::eq(l, found)))?;
        let state = self.state;
        self.latest[index].get_or_insert_with(|| latest_value(&state.latest[index]));
        Some(index)
    }

    /// The variables of an item whose `event` was converted at `index`.
    fn vars(&self, index: Option<usize>) -> Vars<'_> {
        let event = index.and_then(|i| self.latest[i].as_ref()).unwrap_or(&self.trigger);
        Vars(vec![("trigger", self.trigger.as_ref()), ("event", event.as_ref()), ("case", self.case.as_ref())])
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
        // Only the members some expression reads, as the case state keeps them.
        let empty = serde_json::Map::new();
        let object = trigger.data.as_object().unwrap_or(&empty);
        let data = || cel_members(object, &self.members);
        let payload = data();
        // Most triggers are no handover (their `when` fails): the trigger and the case are
        // made into values only for one that is.
        let mut values = None;
        let mut out = Vec::new();
        for handover in candidates {
            // A trigger condition that cannot be evaluated is not a handover: nothing to count.
            let when = holds(&handover.when, &Vars(vec![(DATA, payload.as_ref())]));
            if when != Ok(true) {
                continue;
            }
            let values = values.get_or_insert_with(|| ItemValues::new(state, trigger, data()));
            let items = handover.items.iter().filter_map(|item| item_outcome(item, state, trigger, values)).collect();
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
    values: &mut ItemValues<'_>,
) -> Option<ItemOutcome> {
    let (partner, event_type, found) = match &item.source {
        Some(s) => (s.partner.as_str(), s.event_type.as_str(), state.latest(&s.event_type, &s.partner)),
        None => (trigger.source, trigger.event_type, None),
    };
    let mut outcome = ItemOutcome {
        item: item.name.clone(),
        partner: partner.to_owned(),
        event_type: event_type.to_owned(),
        status: ItemStatus::Met,
        error: String::new(),
    };
    let index = values.convert(found);
    let vars = values.vars(index);
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
