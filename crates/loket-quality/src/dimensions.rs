//! Quality dimensions beside completeness, per partner × event type: validity (accepted
//! over published), timeliness (the delay from an event's own `time` to the gateway's
//! receipt, p50 and p90), uniqueness (accepted over accepted plus duplicate publishes) and
//! handover readiness (the items the partner should have supplied that were met).
//!
//! Delays are counted in a histogram of logarithmic bins (eight per doubling, so a
//! percentile is at most 9% below the true delay): integer counts, so live counting and a
//! rebuild give identical figures, and a bucket stays small whatever the volume.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aggregate::{share, Bucket, Rejections};

/// Bins per doubling of the delay.
const PER_DOUBLING: f64 = 8.0;

/// The histogram bin of a delay: 0 below one second (or negative: a publisher's clock
/// ahead of ours), else 1 + 8·log2(seconds).
pub fn delay_bin(delay_micros: i64) -> u16 {
    let seconds = delay_micros as f64 / 1_000_000.0;
    if seconds < 1.0 {
        0
    } else {
        1 + (PER_DOUBLING * seconds.log2()).floor().min(f64::from(u16::MAX - 1)) as u16
    }
}

/// The smallest delay in seconds that falls in `bin`.
pub fn bin_seconds(bin: u16) -> f64 {
    if bin == 0 {
        0.0
    } else {
        2f64.powf(f64::from(bin - 1) / PER_DOUBLING)
    }
}

/// The `q` quantile (0..1) of a delay histogram in seconds (the bin's lower bound), or
/// `None` without timed events.
pub fn quantile(delays: &BTreeMap<u16, u64>, q: f64) -> Option<f64> {
    let total: u64 = delays.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bin, n) in delays {
        seen += n;
        if seen >= rank {
            return Some(bin_seconds(*bin));
        }
    }
    None
}

/// The median of `values`, `None` when empty (the scorecard's chain median).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}

/// The dimensions of one partner × event type over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimensionFigure {
    pub partner: String,
    pub event_type: String,
    /// Accepted plus refused publishes (duplicates are neither).
    pub published: u64,
    pub accepted: u64,
    /// Accepted over published, 0..1.
    pub validity: f64,
    pub mean_completeness: f64,
    /// Accepted events that carried a `time`.
    pub timed: u64,
    pub timeliness_p50_seconds: Option<f64>,
    pub timeliness_p90_seconds: Option<f64>,
    pub duplicates: u64,
    /// Accepted over accepted plus duplicates, 0..1.
    pub uniqueness: f64,
    /// Handover items this partner should have supplied with this type, and those met.
    pub items_due: u64,
    pub items_met: u64,
    /// Met over due; `None` when nothing was due.
    pub readiness: Option<f64>,
}

impl DimensionFigure {
    pub fn of(partner: &str, event_type: &str, bucket: &Bucket, rejections: &Rejections) -> DimensionFigure {
        let published = bucket.events + rejections.total();
        DimensionFigure {
            partner: partner.to_owned(),
            event_type: event_type.to_owned(),
            published,
            accepted: bucket.events,
            validity: share(bucket.events, published),
            mean_completeness: bucket.mean_completeness(),
            timed: bucket.delays.values().sum(),
            timeliness_p50_seconds: quantile(&bucket.delays, 0.5),
            timeliness_p90_seconds: quantile(&bucket.delays, 0.9),
            duplicates: rejections.duplicates,
            uniqueness: share(bucket.events, bucket.events + rejections.duplicates),
            items_due: 0,
            items_met: 0,
            readiness: None,
        }
    }

    /// Adds the handover items due and met.
    pub fn with_items(mut self, due: u64, met: u64) -> DimensionFigure {
        self.items_due = due;
        self.items_met = met;
        self.readiness = (due > 0).then(|| share(met, due));
        self
    }
}

/// Adds readiness (per partner × type: items due, met) to `dimensions`, with a row of its
/// own for a partner × type that only had items due (it published nothing of the type).
pub fn add_readiness(dimensions: &mut Vec<DimensionFigure>, readiness: &BTreeMap<(String, String), (u64, u64)>) {
    for ((partner, event_type), (due, met)) in readiness {
        match dimensions.iter_mut().find(|d| d.partner == *partner && d.event_type == *event_type) {
            Some(d) => *d = d.clone().with_items(*due, *met),
            None => dimensions.push(
                DimensionFigure::of(partner, event_type, &Bucket::default(), &Rejections::default())
                    .with_items(*due, *met),
            ),
        }
    }
    dimensions.sort_by(|a, b| (&a.partner, &a.event_type).cmp(&(&b.partner, &b.event_type)));
}

/// Readiness per partner × type summed per partner, keyed like the partner rows.
pub fn per_partner(readiness: &BTreeMap<(String, String), (u64, u64)>) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for ((partner, _), (due, met)) in readiness {
        let r = out.entry((partner.clone(), crate::aggregate::ALL_TYPES.to_owned())).or_default();
        r.0 += due;
        r.1 += met;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_logarithmic_and_quantiles_take_the_lower_bound() {
        assert_eq!(delay_bin(-5), 0);
        assert_eq!(delay_bin(999_999), 0);
        assert_eq!(delay_bin(1_000_000), 1);
        assert_eq!(delay_bin(2_000_000), 9);
        assert_eq!(bin_seconds(9), 2.0);
        for seconds in [1.5, 7.0, 60.0, 3600.0, 86_400.0 * 30.0] {
            let floor = bin_seconds(delay_bin((seconds * 1e6) as i64));
            assert!(floor <= seconds && floor > seconds / 1.1, "{seconds}: {floor}");
        }
        let mut h = BTreeMap::new();
        for s in [1i64, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
            *h.entry(delay_bin(s * 1_000_000)).or_default() += 1;
        }
        assert_eq!(quantile(&h, 0.5), Some(16.0));
        assert_eq!(quantile(&h, 0.9), Some(256.0));
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}
