//! What quality measurement adds to each publish: evaluating the built-in rules of a
//! transport-status event and counting an accepted event in the store.
//! `cargo run --release -p loket-quality --example quality_cost`

use std::time::Instant;

use loket_quality::{Accepted, QualityStore, RuleSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let example = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/examples/transport-status.json"))?;
    let data: serde_json::Value = serde_json::from_slice(&example)?;
    let rules = RuleSet::embedded(&["transport-status", "baggage"])?;
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        assert!(rules.evaluate("transport-status", &data).is_empty());
    }
    let per_eval = started.elapsed().as_secs_f64() / f64::from(n) * 1e6;

    let dir = tempfile::tempdir()?;
    let store = QualityStore::open(dir.path())?;
    let expected: Vec<String> = (0..7).map(|i| format!("/field{i}")).collect();
    let missing = vec![expected[3].clone()];
    let started = Instant::now();
    for i in 0..n {
        let partner = ["dvo", "kmar", "dji"][i as usize % 3];
        store.record_accepted(&Accepted {
            received_at_micros: 1_700_000_000_000_000,
            partner,
            event_type: "transport-status",
            expected: &expected,
            missing: &missing,
            completeness: 6.0 / 7.0,
            flagged: &[],
            time_micros: Some(1_700_000_000_000_000 - 5_000_000),
        })?;
    }
    let per_record = started.elapsed().as_secs_f64() / f64::from(n) * 1e6;
    println!("rules (2 CEL rules, transport-status): {per_eval:.1} µs per event");
    println!("figures (7 expected fields, counted in memory, written per bucket): {per_record:.1} µs per event");
    Ok(())
}
