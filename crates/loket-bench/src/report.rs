//! The end of a run: the table and the ratios on standard output, and with `--json` the
//! same as a document.

use std::path::Path;

use anyhow::Context;

use crate::stats::{table, ArmResult};

/// What the corpus was, for the JSON document.
pub struct CorpusFacts<'a> {
    pub path: &'a Path,
    pub events: usize,
    pub mean_payload_bytes: usize,
}

pub fn print(results: &[ArmResult]) {
    println!("{}", table(results));
    for line in ratios(results) {
        println!("{line}");
    }
}

pub fn write_json(path: &Path, results: &[ArmResult], corpus: &CorpusFacts) -> anyhow::Result<()> {
    let doc = serde_json::json!({ "results": results, "ratios": ratios(results), "corpus_events": corpus.events,
                                  "corpus": corpus.path.display().to_string(),
                                  "mean_payload_bytes": corpus.mean_payload_bytes });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?).with_context(|| format!("cannot write {}", path.display()))
}

/// The gateway's throughput over its baseline's, for each pair that ran; and its CPU per
/// streamed event over the floor of the work it must do (validating and journalling).
fn ratios(results: &[ArmResult]) -> Vec<String> {
    let arm = |name: &str| results.iter().find(|r| r.arm == name);
    let rate = |name: &str| arm(name).map(|r| r.events_per_second);
    let cpu = |name: &str| arm(name).and_then(|r| r.cpu_us_per_event);
    let mut out = Vec::new();
    for (a, b) in [
        ("gateway-stream", "transport-stream"),
        ("gateway-kafka", "rdkafka-raw"),
        ("gateway-unary", "transport-unary"),
        ("replay", "journal-read"),
    ] {
        if let (Some(x), Some(y)) = (rate(a), rate(b)) {
            out.push(format!("ratio {a} / {b}: {:.2}", x / y));
        }
    }
    let records = |name: &str| arm(name).and_then(|r| r.records_per_second);
    if let (Some(x), Some(y)) = (records("gateway-kafka"), records("rdkafka-raw")) {
        out.push(format!("records ratio gateway-kafka / rdkafka-raw: {:.2}", x / y));
    }
    if let (Some(g), Some(v), Some(j)) = (cpu("gateway-stream"), cpu("validate"), cpu("journal")) {
        out.push(format!("cpu ratio gateway-stream / (validate + journal): {:.2}", g / (v + j)));
    }
    out
}
