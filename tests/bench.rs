//! A smoke run of `loket bench` on its default corpus (a `loket gen` log): every arm runs
//! and reports figures. Never a time. The Kafka arms use the broker tests/run starts.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

/// `loket bench --smoke ARGS`, which must succeed; its output and its JSON report.
fn smoke(args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(["bench", "--smoke"])
        .args(args)
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (out, serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap())
}

#[test]
fn every_benchmark_arm_runs_and_reports_figures() {
    let broker = common::kafka::shared_broker();
    let (out, doc) = smoke(&["--kafka", &broker]);
    let results = doc["results"].as_array().unwrap();
    let arms: Vec<&str> = results.iter().map(|r| r["arm"].as_str().unwrap()).collect();
    let arm = |name: &str| {
        results.iter().find(|r| r["arm"] == name).unwrap_or_else(|| panic!("{name} missing from {arms:?}"))
    };
    for name in [
        "validate",
        "journal",
        "transport-unary",
        "transport-stream",
        "gateway-unary",
        "gateway-stream",
        "gateway-at-200/s",
        "gateway-at-70%",
        "gateway-kafka-at-50/s",
        "gateway-kafka",
        "rdkafka-raw",
        "replay",
        "memory",
        "recovery",
        "journal-read",
    ] {
        let r = arm(name);
        assert!(r["events"].as_u64().unwrap() > 0, "{name}: {r}");
        if name != "memory" {
            assert!(r["events_per_second"].as_f64().unwrap() > 0.0, "{name}: {r}");
        }
        // The raw producer and the journal read run inside the benchmark process, whose
        // peak is not their own; recovery is a time.
        if !["rdkafka-raw", "journal-read", "recovery"].contains(&name) {
            assert!(r["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0, "{name}: {r}");
        }
    }
    for name in [
        "validate",
        "journal",
        "transport-unary",
        "gateway-unary",
        "gateway-stream",
        "gateway-at-200/s",
        "gateway-at-70%",
        "gateway-kafka-at-50/s",
        "gateway-kafka",
        "rdkafka-raw",
    ] {
        let r = arm(name);
        assert!(r["p99_us"].as_u64().is_some(), "{name} has latency percentiles: {r}");
    }
    // CPU time is counted in clock ticks, which a smoke run may not fill: present, not > 0.
    for name in ["gateway-kafka", "rdkafka-raw"] {
        assert!(arm(name)["cpu_us_per_event"].as_f64().is_some(), "{name}: {}", arm(name));
    }
    for name in ["gateway-kafka", "gateway-kafka-at-50/s"] {
        let kafka = arm(name);
        for key in ["e2e_p50_us", "e2e_p99_us", "e2e_p999_us"] {
            assert!(kafka[key].as_u64().is_some(), "{name} has {key}: {kafka}");
        }
    }
    for name in ["gateway-kafka", "rdkafka-raw"] {
        assert!(arm(name)["records_per_second"].as_f64().is_some_and(|r| r > 0.0), "{name}: {}", arm(name));
    }
    // The overload arm: one row per partner, one of them abusive and held to its quota; no
    // call fails with anything but RESOURCE_EXHAUSTED.
    let overload: Vec<&Value> =
        results.iter().filter(|r| r["arm"].as_str().unwrap().starts_with("overload-")).collect();
    assert!(overload.len() >= 2, "{arms:?}");
    for r in &overload {
        let note = r["note"].as_str().unwrap();
        assert!(note.contains("other errors 0"), "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
    let abusive = overload.iter().find(|r| r["note"].as_str().unwrap().starts_with("abusive")).expect("an abusive row");
    assert!(!abusive["note"].as_str().unwrap().contains("(quota 0,"), "the abuser ran into its quota: {abusive}");
    let ratios: Vec<&str> = doc["ratios"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(
        arm("recovery")["note"].as_str().unwrap().contains("first publish acked"),
        "recovery says what it timed: {}",
        arm("recovery")
    );
    for ratio in [
        "ratio gateway-stream / transport-stream",
        "ratio gateway-kafka / rdkafka-raw",
        "ratio replay / journal-read",
        "records ratio gateway-kafka / rdkafka-raw",
        "cpu ratio gateway-stream / (validate + journal)",
    ] {
        assert!(ratios.iter().any(|r| r.starts_with(ratio)), "{ratio} missing from {ratios:?}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    for row in ["| gateway-stream |", "| gateway-kafka |", "| rdkafka-raw |"] {
        assert!(table.contains(row), "{table}");
    }
}

/// The soak arm runs only when named; a smoke run of it samples disk and memory.
#[test]
fn the_soak_arm_samples_disk_and_memory() {
    let (out, doc) = smoke(&["--arms", "soak"]);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let soak = &results[0];
    assert_eq!(soak["arm"], "soak");
    assert!(soak["events"].as_u64().unwrap() > 0, "{soak}");
    assert!(soak["note"].as_str().unwrap().contains("disk/RSS MiB"), "{soak}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| l.starts_with("soak:")).count(), 12, "{stderr}");
    // After the run, the size of every sled tree, per store.
    let trees: Vec<&str> = stderr.lines().filter(|l| l.starts_with("soak tree:")).collect();
    for tree in ["journal    events", "quality    chain-timeline", "processing __sled__default"] {
        assert!(trees.iter().any(|l| l.contains(tree)), "{tree}: {stderr}");
    }
}
