//! What each arm reports, and the table that shows them side by side.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// Latency in microseconds, 1 µs to 1 h, 3 significant digits: for end-to-end latencies
/// through a broker, which a slow broker can stretch beyond a minute.
pub fn long_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Records `latency`, clamped to what `h` can hold.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, h.high());
    h.saturating_record(micros);
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmResult {
    pub arm: String,
    /// Events completed (acknowledged, validated, stored or delivered).
    pub events: u64,
    /// Of those, refused by the gateway (the corpus has realistic defect rates).
    pub rejected: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Kafka records produced per second, where one event becomes several records (one
    /// per topic it lands on) or a record is the unit (the raw producer).
    pub records_per_second: Option<f64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
    /// End to end, publish → a plain consumer has the record (Kafka arms).
    pub e2e_p50_us: Option<u64>,
    pub e2e_p99_us: Option<u64>,
    pub e2e_p999_us: Option<u64>,
    /// CPU time of the process doing the work (the gateway, or this process for
    /// in-process arms) per event.
    pub cpu_us_per_event: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Anything else worth a column: offered rate, journal bytes, …
    pub note: String,
}

impl ArmResult {
    pub fn new(arm: &str, events: u64, rejected: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            arm: arm.to_owned(),
            events,
            rejected,
            seconds,
            events_per_second: if seconds > 0.0 { events as f64 / seconds } else { 0.0 },
            records_per_second: None,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            e2e_p50_us: None,
            e2e_p99_us: None,
            e2e_p999_us: None,
            cpu_us_per_event: None,
            peak_rss_mib: None,
            note: String::new(),
        }
    }

    pub fn latency(mut self, h: &Histogram<u64>) -> Self {
        if !h.is_empty() {
            self.p50_us = Some(h.value_at_quantile(0.50));
            self.p99_us = Some(h.value_at_quantile(0.99));
            self.p999_us = Some(h.value_at_quantile(0.999));
        }
        self
    }

    pub fn e2e(mut self, h: &Histogram<u64>) -> Self {
        if !h.is_empty() {
            self.e2e_p50_us = Some(h.value_at_quantile(0.50));
            self.e2e_p99_us = Some(h.value_at_quantile(0.99));
            self.e2e_p999_us = Some(h.value_at_quantile(0.999));
        }
        self
    }

    /// `records` Kafka records produced in the arm's time.
    pub fn records(mut self, records: u64) -> Self {
        if self.seconds > 0.0 {
            self.records_per_second = Some(records as f64 / self.seconds);
        }
        self
    }

    pub fn cpu(mut self, cpu: Duration) -> Self {
        if self.events > 0 {
            self.cpu_us_per_event = Some(cpu.as_secs_f64() * 1e6 / self.events as f64);
        }
        self
    }

    pub fn rss(mut self, bytes: Option<u64>) -> Self {
        self.peak_rss_mib = bytes.map(|b| b as f64 / (1024.0 * 1024.0));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub fn table(results: &[ArmResult]) -> String {
    let mut out = String::from(
        "| arm | events | rejected | events/s | records/s | p50 µs | p99 µs | p99.9 µs | e2e p50 / p99 / p99.9 µs | CPU µs/event | peak RSS MiB | note |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let e2e = match (r.e2e_p50_us, r.e2e_p99_us, r.e2e_p999_us) {
            (Some(a), Some(b), Some(c)) => format!("{a} / {b} / {c}"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.arm,
            r.events,
            r.rejected,
            r.events_per_second,
            opt(r.records_per_second.map(|r| format!("{r:.0}"))),
            opt(r.p50_us),
            opt(r.p99_us),
            opt(r.p999_us),
            e2e,
            opt(r.cpu_us_per_event.map(|c| format!("{c:.1}"))),
            opt(r.peak_rss_mib.map(|m| format!("{m:.0}"))),
            r.note
        ));
    }
    out
}
