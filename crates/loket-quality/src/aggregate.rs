//! The quality figures and how they add up. No I/O: [`crate::store`] keeps them.
//!
//! Everything is counted per bucket: one UTC day × publishing partner × event type.
//! Completeness is summed in millionths so that the sum is an integer: the same events
//! give the same figures whatever order they were counted in (live, concurrent publishes)
//! or recounted in (a rebuild in journal order).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dimensions::{delay_bin, DimensionFigure};

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;
/// Completeness is kept in millionths.
const SCALE: f64 = 1_000_000.0;

/// The UTC day (days since 1970-01-01) of a Unix-microseconds instant.
pub fn day_of(micros: i64) -> i32 {
    micros.div_euclid(DAY_MICROS) as i32
}

/// `YYYY-MM-DD` of a day number.
pub fn day_label(day: i32) -> String {
    // Julian day number of 1970-01-01.
    match time::Date::from_julian_day(day + 2_440_588) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => day.to_string(),
    }
}

/// The day number of a `YYYY-MM-DD` date.
pub fn parse_day(text: &str) -> Option<i32> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).ok().map(|d| d.to_julian_day() - 2_440_588)
}

/// Where a figure is counted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketKey {
    pub day: i32,
    pub partner: String,
    pub event_type: String,
}

/// How often an expected field was there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCount {
    /// Accepted events whose schema expects the field.
    pub seen: u64,
    /// Of those, the events that had it filled.
    pub filled: u64,
}

/// The figures of accepted events in one bucket; all of it can be recounted from the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub events: u64,
    /// Sum of the events' completeness, in millionths.
    pub completeness_millionths: u64,
    /// Per expected field (JSON pointer).
    pub fields: BTreeMap<String, FieldCount>,
    /// Accepted events that failed a `flag` rule, by rule.
    pub flagged: BTreeMap<String, u64>,
    /// Accepted events with a `time`, by bin of their delay to receipt
    /// ([`crate::dimensions::delay_bin`]).
    #[serde(default)]
    pub delays: BTreeMap<u16, u64>,
}

/// Refused publishes in one bucket. The journal holds accepted events only, so these are
/// counted at intake and cannot be recounted by a rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejections {
    /// By violation kind: the ErrorInfo reason (SCHEMA_VIOLATION, RULE_VIOLATION, ...).
    pub kinds: BTreeMap<String, u64>,
    /// Publishes refused by a `reject` rule, by rule.
    pub rules: BTreeMap<String, u64>,
    /// Publishes of an event already stored (same source and id, same content): answered
    /// with the original, not stored again, and never in the journal either.
    #[serde(default)]
    pub duplicates: u64,
}

/// An accepted (not duplicate) event, as far as quality is concerned.
#[derive(Debug, Clone)]
pub struct Accepted<'a> {
    pub received_at_micros: i64,
    pub partner: &'a str,
    pub event_type: &'a str,
    /// The schema's expected fields.
    pub expected: &'a [String],
    /// The expected fields the event lacked.
    pub missing: &'a [String],
    pub completeness: f64,
    /// The `flag` rules it failed.
    pub flagged: &'a [String],
    /// The event's own `time` attribute, Unix µs, when it had one.
    pub time_micros: Option<i64>,
}

impl Accepted<'_> {
    pub fn key(&self) -> BucketKey {
        BucketKey {
            day: day_of(self.received_at_micros),
            partner: self.partner.to_owned(),
            event_type: self.event_type.to_owned(),
        }
    }
}

impl Bucket {
    pub fn add(&mut self, event: &Accepted<'_>) {
        self.events += 1;
        self.completeness_millionths += (event.completeness.clamp(0.0, 1.0) * SCALE).round() as u64;
        for field in event.expected {
            let count = self.fields.entry(field.clone()).or_default();
            count.seen += 1;
            if !event.missing.contains(field) {
                count.filled += 1;
            }
        }
        for rule in event.flagged {
            *self.flagged.entry(rule.clone()).or_default() += 1;
        }
        if let Some(time) = event.time_micros {
            *self.delays.entry(delay_bin(event.received_at_micros - time)).or_default() += 1;
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Bucket) {
        self.events += other.events;
        self.completeness_millionths += other.completeness_millionths;
        for (field, c) in &other.fields {
            let mine = self.fields.entry(field.clone()).or_default();
            mine.seen += c.seen;
            mine.filled += c.filled;
        }
        add_counts(&mut self.flagged, &other.flagged);
        for (bin, n) in &other.delays {
            *self.delays.entry(*bin).or_default() += n;
        }
    }

    /// Mean completeness, 0..1 (0 without events).
    pub fn mean_completeness(&self) -> f64 {
        ratio(self.completeness_millionths as f64 / SCALE, self.events)
    }
}

impl Rejections {
    pub fn add(&mut self, kind: &str, rules: &[String]) {
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        for rule in rules {
            *self.rules.entry(rule.clone()).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &Rejections) {
        add_counts(&mut self.kinds, &other.kinds);
        add_counts(&mut self.rules, &other.rules);
        self.duplicates += other.duplicates;
    }

    pub fn total(&self) -> u64 {
        self.kinds.values().sum()
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// `part` over `whole`, 0 when there is no whole.
pub(crate) fn share(part: u64, whole: u64) -> f64 {
    ratio(part as f64, whole)
}

fn ratio(part: f64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part / whole as f64
    }
}

/// Which figures a report covers. `None` means no restriction.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub partners: Option<Vec<String>>,
    pub event_type: Option<String>,
    /// First and last day included.
    pub from_day: Option<i32>,
    pub to_day: Option<i32>,
}

impl Filter {
    pub fn matches(&self, key: &BucketKey) -> bool {
        self.partners.as_ref().is_none_or(|p| p.contains(&key.partner))
            && self.event_type.as_ref().is_none_or(|t| *t == key.event_type)
            && self.from_day.is_none_or(|d| key.day >= d)
            && self.to_day.is_none_or(|d| key.day <= d)
    }
}

/// Per partner × type × field over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldFigure {
    pub partner: String,
    pub event_type: String,
    pub field: String,
    pub seen: u64,
    pub filled: u64,
    pub fill_rate: f64,
}

/// Per partner × type over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeFigure {
    pub partner: String,
    pub event_type: String,
    pub events: u64,
    pub mean_completeness: f64,
    pub rejected: u64,
    /// Rejected publishes over all attempts (accepted + rejected), 0..1.
    pub rejection_rate: f64,
    pub rejections: BTreeMap<String, u64>,
    /// Failed rules (flagged on accepted events and refusals by reject rules), by rule.
    pub rules_failed: BTreeMap<String, u64>,
}

/// Per day × partner × type, for trends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayFigure {
    pub day: String,
    pub partner: String,
    pub event_type: String,
    pub events: u64,
    pub mean_completeness: f64,
}

/// The figures of a period, sorted by partner, type, field (and day).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub fields: Vec<FieldFigure>,
    pub types: Vec<TypeFigure>,
    pub days: Vec<DayFigure>,
    /// Validity, timeliness and uniqueness per partner × type; readiness is added from the
    /// handover figures ([`crate::dimensions::add_readiness`]).
    pub dimensions: Vec<DimensionFigure>,
    /// The same per partner over all its types (type [`ALL_TYPES`]), for the scorecard.
    pub partners: Vec<DimensionFigure>,
}

/// The event type of a figure about all of a partner's types.
pub const ALL_TYPES: &str = "*";

impl Report {
    pub fn build<'a>(
        accepted: impl IntoIterator<Item = (&'a BucketKey, &'a Bucket)>,
        rejected: impl IntoIterator<Item = (&'a BucketKey, &'a Rejections)>,
        filter: &Filter,
    ) -> Report {
        let mut per_type: BTreeMap<(String, String), (Bucket, Rejections)> = BTreeMap::new();
        let mut days = Vec::new();
        for (key, bucket) in accepted.into_iter().filter(|(k, _)| filter.matches(k)) {
            per_type.entry((key.partner.clone(), key.event_type.clone())).or_default().0.merge(bucket);
            days.push(DayFigure {
                day: day_label(key.day),
                partner: key.partner.clone(),
                event_type: key.event_type.clone(),
                events: bucket.events,
                mean_completeness: bucket.mean_completeness(),
            });
        }
        for (key, r) in rejected.into_iter().filter(|(k, _)| filter.matches(k)) {
            per_type.entry((key.partner.clone(), key.event_type.clone())).or_default().1.merge(r);
        }
        days.sort_by(|a, b| (&a.partner, &a.event_type, &a.day).cmp(&(&b.partner, &b.event_type, &b.day)));
        let mut report = Report { days, ..Report::default() };
        let mut per_partner: BTreeMap<String, (Bucket, Rejections)> = BTreeMap::new();
        for ((partner, _), (bucket, rejections)) in &per_type {
            let p = per_partner.entry(partner.clone()).or_default();
            p.0.merge(bucket);
            p.1.merge(rejections);
        }
        report.partners = per_partner.iter().map(|(p, (b, r))| DimensionFigure::of(p, ALL_TYPES, b, r)).collect();
        for ((partner, event_type), (bucket, rejections)) in per_type {
            for (field, c) in &bucket.fields {
                report.fields.push(FieldFigure {
                    partner: partner.clone(),
                    event_type: event_type.clone(),
                    field: field.clone(),
                    seen: c.seen,
                    filled: c.filled,
                    fill_rate: ratio(c.filled as f64, c.seen),
                });
            }
            report.dimensions.push(DimensionFigure::of(&partner, &event_type, &bucket, &rejections));
            let rejected = rejections.total();
            let mut rules_failed = bucket.flagged.clone();
            add_counts(&mut rules_failed, &rejections.rules);
            report.types.push(TypeFigure {
                partner,
                event_type,
                events: bucket.events,
                mean_completeness: bucket.mean_completeness(),
                rejected,
                rejection_rate: ratio(rejected as f64, bucket.events + rejected),
                rejections: rejections.kinds,
                rules_failed,
            });
        }
        report
    }

    /// Failed rules over the whole report, most failed first.
    pub fn most_failed_rules(&self) -> Vec<(String, u64)> {
        let mut all = BTreeMap::new();
        for t in &self.types {
            add_counts(&mut all, &t.rules_failed);
        }
        let mut list: Vec<_> = all.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn days_are_utc_and_labelled() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(parse_day("2024-03-15").map(day_label).as_deref(), Some("2024-03-15"));
        assert_eq!(parse_day("15-03-2024"), None);
    }

    #[test]
    fn fill_rates_completeness_and_rejections_add_up() {
        let expected = s(&["/a", "/b"]);
        let mut buckets: BTreeMap<BucketKey, Bucket> = BTreeMap::new();
        let events = [(s(&[]), 1.0, s(&[])), (s(&["/a"]), 0.5, s(&["r1"])), (s(&["/a", "/b"]), 0.0, s(&["r1"]))];
        for (missing, completeness, flagged) in &events {
            let e = Accepted {
                received_at_micros: DAY_MICROS * 3 + 5,
                partner: "dvo",
                event_type: "baggage",
                expected: &expected,
                missing,
                completeness: *completeness,
                flagged,
                time_micros: Some(DAY_MICROS * 3 - 30_000_000),
            };
            buckets.entry(e.key()).or_default().add(&e);
        }
        let mut rejected: BTreeMap<BucketKey, Rejections> = BTreeMap::new();
        let key = BucketKey { day: 3, partner: "dvo".into(), event_type: "baggage".into() };
        rejected.entry(key.clone()).or_default().add("RULE_VIOLATION", &s(&["r2"]));
        let report = Report::build(&buckets, &rejected, &Filter::default());
        assert_eq!(report.fields.len(), 2);
        assert_eq!((report.fields[0].seen, report.fields[0].filled), (3, 1));
        assert_eq!((report.fields[1].seen, report.fields[1].filled), (3, 2));
        let t = &report.types[0];
        assert_eq!(t.events, 3);
        assert_eq!(t.mean_completeness, 0.5);
        assert_eq!(t.rejected, 1);
        assert_eq!(t.rejection_rate, 0.25);
        assert_eq!(report.most_failed_rules(), vec![("r1".to_owned(), 2), ("r2".to_owned(), 1)]);
        let d = &report.dimensions[0];
        assert_eq!((d.published, d.accepted, d.validity, d.timed), (4, 3, 0.75, 3));
        assert!(d.timeliness_p50_seconds.is_some_and(|s| s <= 30.0 && s > 27.0), "{d:?}");
        let none = Filter { partners: Some(s(&["kmar"])), ..Filter::default() };
        assert_eq!(Report::build(&buckets, &rejected, &none), Report::default());
        let later = Filter { from_day: Some(4), ..Filter::default() };
        assert!(Report::build(&buckets, &rejected, &later).types.is_empty());
    }
}
