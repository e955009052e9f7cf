//! A smoke run of `loket bench` on its default corpus (a `loket gen` log): every arm runs
//! and reports figures. Never a time.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_benchmark_arm_runs_and_reports_figures() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");

    let out =
        Command::new(env!("CARGO_BIN_EXE_loket")).args(["bench", "--smoke", "--json"]).arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    let arms: Vec<&str> = results.iter().map(|r| r["arm"].as_str().unwrap()).collect();
    for arm in [
        "validate",
        "journal",
        "transport-unary",
        "transport-stream",
        "gateway-unary",
        "gateway-stream",
        "gateway-at-200/s",
        "replay",
        "memory",
    ] {
        let r = results.iter().find(|r| r["arm"] == arm).unwrap_or_else(|| panic!("{arm} missing from {arms:?}"));
        assert!(r["events"].as_u64().unwrap() > 0, "{arm}: {r}");
        if arm != "memory" {
            assert!(r["events_per_second"].as_f64().unwrap() > 0.0, "{arm}: {r}");
        }
        assert!(r["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0, "{arm}: {r}");
    }
    for arm in ["validate", "journal", "transport-unary", "gateway-unary", "gateway-stream", "gateway-at-200/s"] {
        let r = results.iter().find(|r| r["arm"] == arm).unwrap();
        assert!(r["p99_us"].as_u64().is_some(), "{arm} has latency percentiles: {r}");
    }
    let ratios: Vec<&str> = doc["ratios"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(ratios.iter().any(|r| r.starts_with("ratio gateway-stream / transport-stream")), "{ratios:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| gateway-stream |"), "{table}");
}
