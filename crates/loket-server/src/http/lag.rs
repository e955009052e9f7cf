//! The subscriber lag gauge, `loket_subscriber_lag_events{partner,subscription}`, kept
//! here rather than in the metrics recorder: the `metrics` crate and its Prometheus
//! exporter cannot remove one series (metrics-rs/metrics#243), and a named
//! subscription's series must go when the subscription is deleted or expires, or every
//! name ever used would stay on `/metrics`. The page renders these after the recorder's.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::metrics::SUBSCRIBER_LAG;

/// (partner, subscription name; empty for an unnamed one) → events not yet delivered.
static LAGS: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

fn lags() -> std::sync::MutexGuard<'static, BTreeMap<(String, String), u64>> {
    LAGS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn set(partner: &str, name: &str, lag: u64) {
    lags().insert((partner.to_owned(), name.to_owned()), lag);
}

/// Drops the series of a deleted or expired named subscription.
pub(crate) fn forget(partner: &str, name: &str) {
    lags().remove(&(partner.to_owned(), name.to_owned()));
}

/// A label value in the exposition format's escaping.
fn escaped(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends the gauge, with its HELP and TYPE, to a `/metrics` page.
pub(crate) fn render(page: &mut String) {
    let lags = lags();
    if lags.is_empty() {
        return;
    }
    let _ = writeln!(page, "# HELP {SUBSCRIBER_LAG} Events in the journal after the last one delivered, per partner and subscription name.");
    let _ = writeln!(page, "# TYPE {SUBSCRIBER_LAG} gauge");
    for ((partner, name), lag) in lags.iter() {
        let (partner, name) = (escaped(partner), escaped(name));
        let _ = writeln!(page, "{SUBSCRIBER_LAG}{{partner=\"{partner}\",subscription=\"{name}\"}} {lag}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_series_leaves_the_page_and_labels_are_escaped() {
        set("dtv", "lag-test-kept", 3);
        set("dtv", "lag-test-\"gone\"", 5);
        let mut page = String::new();
        render(&mut page);
        assert!(page.contains("loket_subscriber_lag_events{partner=\"dtv\",subscription=\"lag-test-kept\"} 3\n"));
        assert!(page.contains("subscription=\"lag-test-\\\"gone\\\"\"} 5\n"), "{page}");
        forget("dtv", "lag-test-\"gone\"");
        let mut page = String::new();
        render(&mut page);
        assert!(page.contains("lag-test-kept") && !page.contains("lag-test-\\\"gone"), "{page}");
    }
}
