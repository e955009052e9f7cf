//! Handover readiness figures: per UTC day × handover kind the handovers and how many were
//! ready, and per partner × item how often the item was due, met, missing, stale or unmet.
//! Pure counting: the same outcomes give the same figures in any order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::evaluate::{HandoverOutcome, ItemStatus};
use crate::aggregate::{day_label, share, Filter};

/// How one item of one handover kind fared, attributed to one partner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCount {
    pub partner: String,
    pub item: String,
    pub event_type: String,
    pub due: u64,
    pub met: u64,
    pub missing: u64,
    pub stale: u64,
    pub unmet: u64,
}

impl ItemCount {
    fn named(partner: &str, item: &str, event_type: &str) -> ItemCount {
        ItemCount {
            partner: partner.to_owned(),
            item: item.to_owned(),
            event_type: event_type.to_owned(),
            ..ItemCount::default()
        }
    }

    fn merge(&mut self, other: &ItemCount) {
        self.due += other.due;
        self.met += other.met;
        self.missing += other.missing;
        self.stale += other.stale;
        self.unmet += other.unmet;
    }
}

/// The handovers of one kind on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverDay {
    pub handovers: u64,
    pub ready: u64,
    /// By `partner/item`.
    pub items: BTreeMap<String, ItemCount>,
}

impl HandoverDay {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &HandoverDay) {
        self.handovers += other.handovers;
        self.ready += other.ready;
        for (key, c) in &other.items {
            self.items
                .entry(key.clone())
                .or_insert_with(|| ItemCount::named(&c.partner, &c.item, &c.event_type))
                .merge(c);
        }
    }

    pub fn add(&mut self, outcome: &HandoverOutcome) {
        self.handovers += 1;
        self.ready += u64::from(outcome.ready());
        for i in &outcome.items {
            let count = self
                .items
                .entry(format!("{}/{}", i.partner, i.item))
                .or_insert_with(|| ItemCount::named(&i.partner, &i.item, &i.event_type));
            count.due += 1;
            match i.status {
                ItemStatus::Met => count.met += 1,
                ItemStatus::Missing => count.missing += 1,
                ItemStatus::Stale => count.stale += 1,
                ItemStatus::Unmet => count.unmet += 1,
            }
        }
    }
}

/// Per kind × item × partner over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemFigure {
    pub kind: String,
    pub item: String,
    pub partner: String,
    pub event_type: String,
    pub due: u64,
    pub met: u64,
    pub missing: u64,
    pub stale: u64,
    pub unmet: u64,
    /// Met over due, 0..1.
    pub met_rate: f64,
}

/// Per kind over a period (chain-wide: only without a partner restriction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindFigure {
    pub kind: String,
    pub handovers: u64,
    pub ready: u64,
    pub ready_share: f64,
}

/// Per day × kind, for trends (chain-wide, like [`KindFigure`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindDayFigure {
    pub day: String,
    pub kind: String,
    pub handovers: u64,
    pub ready: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HandoverReport {
    pub items: Vec<ItemFigure>,
    pub kinds: Vec<KindFigure>,
    pub days: Vec<KindDayFigure>,
}

impl HandoverReport {
    /// The figures of `days` (day, kind, counts) that `filter` selects: items by partner,
    /// their event type and day; kind totals and trends only when no partner is singled out
    /// (they are about every partner's items).
    pub fn build<'a>(
        days: impl IntoIterator<Item = (i32, &'a str, &'a HandoverDay)>,
        filter: &Filter,
    ) -> HandoverReport {
        let chain_wide = filter.partners.is_none();
        let in_period = |day: i32| filter.from_day.is_none_or(|d| day >= d) && filter.to_day.is_none_or(|d| day <= d);
        let mut items: BTreeMap<(String, String, String), ItemCount> = BTreeMap::new();
        let mut kinds: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut report = HandoverReport::default();
        for (day, kind, counts) in days.into_iter().filter(|(d, _, _)| in_period(*d)) {
            if chain_wide {
                let k = kinds.entry(kind.to_owned()).or_default();
                k.0 += counts.handovers;
                k.1 += counts.ready;
                report.days.push(KindDayFigure {
                    day: day_label(day),
                    kind: kind.to_owned(),
                    handovers: counts.handovers,
                    ready: counts.ready,
                });
            }
            for c in counts.items.values() {
                let partner_ok = filter.partners.as_ref().is_none_or(|p| p.contains(&c.partner));
                let type_ok = filter.event_type.as_ref().is_none_or(|t| *t == c.event_type);
                if partner_ok && type_ok {
                    let key = (kind.to_owned(), c.item.clone(), c.partner.clone());
                    items.entry(key).or_insert_with(|| ItemCount::named("", "", &c.event_type)).merge(c);
                }
            }
        }
        report.days.sort_by(|a, b| (&a.kind, &a.day).cmp(&(&b.kind, &b.day)));
        report.kinds = kinds
            .into_iter()
            .map(|(kind, (handovers, ready))| KindFigure {
                kind,
                handovers,
                ready,
                ready_share: share(ready, handovers),
            })
            .collect();
        report.items = items
            .into_iter()
            .map(|((kind, item, partner), c)| ItemFigure {
                kind,
                item,
                partner,
                event_type: c.event_type,
                due: c.due,
                met: c.met,
                missing: c.missing,
                stale: c.stale,
                unmet: c.unmet,
                met_rate: share(c.met, c.due),
            })
            .collect();
        report
    }

    /// Items due and met per partner × event type, for the readiness dimension.
    pub fn readiness(&self) -> BTreeMap<(String, String), (u64, u64)> {
        let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for i in &self.items {
            let r = out.entry((i.partner.clone(), i.event_type.clone())).or_default();
            r.0 += i.due;
            r.1 += i.met;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::evaluate::ItemOutcome;

    fn outcome(statuses: &[(&str, &str, ItemStatus)]) -> HandoverOutcome {
        HandoverOutcome {
            kind: "k".into(),
            receiver: "kmar".into(),
            trigger_sequence: 1,
            trigger_type: "transport-status".into(),
            trigger_source: "dvo".into(),
            at_micros: 0,
            items: statuses
                .iter()
                .map(|(item, partner, status)| ItemOutcome {
                    item: (*item).into(),
                    partner: (*partner).into(),
                    event_type: "baggage".into(),
                    status: *status,
                    error: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn items_and_handovers_add_up_and_filter() {
        let mut day = HandoverDay::default();
        day.add(&outcome(&[("bag", "dji", ItemStatus::Met), ("features", "dtv", ItemStatus::Met)]));
        day.add(&outcome(&[("bag", "dji", ItemStatus::Stale), ("features", "dtv", ItemStatus::Met)]));
        day.add(&outcome(&[("bag", "dji", ItemStatus::Missing)]));
        let mut later = HandoverDay::default();
        later.add(&outcome(&[("bag", "dji", ItemStatus::Unmet)]));
        let all = HandoverReport::build([(3, "k", &day), (4, "k", &later)], &Filter::default());
        assert_eq!(all.kinds, [KindFigure { kind: "k".into(), handovers: 4, ready: 1, ready_share: 0.25 }]);
        let bag = &all.items[0];
        assert_eq!((bag.item.as_str(), bag.due, bag.met, bag.missing, bag.stale, bag.unmet), ("bag", 4, 1, 1, 1, 1));
        assert_eq!(all.days.len(), 2);
        assert_eq!(all.readiness()[&("dtv".to_owned(), "baggage".to_owned())], (2, 2));
        let dji = Filter { partners: Some(vec!["dji".into()]), to_day: Some(3), ..Filter::default() };
        let only = HandoverReport::build([(3, "k", &day), (4, "k", &later)], &dji);
        assert!(only.kinds.is_empty() && only.days.is_empty(), "chain-wide totals need no partner filter");
        assert_eq!((only.items.len(), only.items[0].due), (1, 3));
    }
}
