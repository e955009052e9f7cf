//! The fuzz targets (fuzz/src/lib.rs, the very code `cargo fuzz` runs) as plain tests on
//! stable: every target over the seeds generated now from schemas/examples, config/ and
//! `loket gen`, and over its committed corpus in fuzz/corpus/<target>/ (those seeds as
//! written last, plus regression inputs that fuzzing found), without a panic or a hang.
//! Run with LOKET_WRITE_FUZZ_CORPUS=1 to rewrite the committed seeds.

#[path = "../fuzz/src/lib.rs"]
mod targets;

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use loket_server::proto::{
    subscribe_request::Start, AckRequest, CloudEvent, DeleteSubscriptionRequest, Earliest, EventStatusRequest,
    ExportRequest, ListDenialsRequest, ListExportsRequest, ListSchemasRequest, ListSubscriptionsRequest,
    PublishRequest, QualityReportRequest, StatusRequest, SubscribeRequest,
};
use prost::Message;

fn corpus_dir(target: &str) -> PathBuf {
    common::repo_root().join("fuzz/corpus").join(target)
}

/// The seed inputs per target, by file name.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let root = common::repo_root();
    let mut seeds = Vec::new();
    let mut events = Vec::new();
    for t in common::TYPES {
        let example = common::example(t);
        let case = example["vNumber"].as_str().unwrap_or_default().to_owned();
        let data = serde_json::to_vec(&example).unwrap();
        // dji may publish every type; dtv a few (a refusal is a seed too).
        for caller in ["dji", "dtv"] {
            let mut bytes = format!("{caller} {t} seed-{t} {case}\n").into_bytes();
            bytes.extend(&data);
            seeds.push(("intake", format!("{caller}-{t}"), bytes));
        }
        events.push(common::event("dji", t, &format!("seed-{t}"), &example));
    }
    let shipped = std::fs::read(root.join("config/loket.toml")).unwrap();
    seeds.push(("config", "loket.toml".to_owned(), shipped));
    let limits =
        "[grpc]\nhandshake_timeout_secs = 5\n[limits]\nevents_per_second = 10\n[limits.partners.dtv]\nburst = 2\n";
    seeds.push(("config", "limits.toml".to_owned(), limits.as_bytes().to_vec()));

    let log = std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(["gen", "--seed", "1", "--cases", "2"])
        .output()
        .unwrap();
    assert!(log.status.success());
    for (i, line) in String::from_utf8(log.stdout).unwrap().lines().enumerate() {
        seeds.push(("export_line", format!("gen-{i:02}"), line.as_bytes().to_vec()));
    }

    let mut proto = |which: u8, name: &str, bytes: Vec<u8>| {
        seeds.push(("proto_requests", name.to_owned(), [vec![which], bytes].concat()));
    };
    for (i, event) in events.into_iter().enumerate() {
        proto(0, &format!("publish-{i}"), PublishRequest { event: Some(event) }.encode_to_vec());
    }
    proto(0, "publish-empty", PublishRequest { event: Some(CloudEvent::default()) }.encode_to_vec());
    let subscribe = SubscribeRequest {
        types: vec!["baggage".into()],
        start: Some(Start::Earliest(Earliest {})),
        name: "nightly".into(),
        limit: 10,
    };
    proto(1, "subscribe", subscribe.encode_to_vec());
    proto(
        1,
        "subscribe-far",
        SubscribeRequest { start: Some(Start::Sequence(u64::MAX)), ..Default::default() }.encode_to_vec(),
    );
    proto(2, "ack", AckRequest { name: "nightly".into(), sequence: 7 }.encode_to_vec());
    proto(3, "event-status", EventStatusRequest { id: "seed-baggage".into() }.encode_to_vec());
    proto(4, "list-denials", ListDenialsRequest::default().encode_to_vec());
    proto(5, "list-schemas", ListSchemasRequest::default().encode_to_vec());
    proto(
        6,
        "export",
        ExportRequest { sources: vec!["dji".into()], outcomes: 2, ..Default::default() }.encode_to_vec(),
    );
    proto(7, "list-exports", ListExportsRequest::default().encode_to_vec());
    proto(8, "quality-report", QualityReportRequest::default().encode_to_vec());
    proto(9, "status", StatusRequest::default().encode_to_vec());
    proto(10, "list-subscriptions", ListSubscriptionsRequest::default().encode_to_vec());
    proto(11, "delete-subscription", DeleteSubscriptionRequest { name: "nightly".into() }.encode_to_vec());
    seeds
}

/// The seeds as they are generated now (examples, config and gen change over time) run
/// through every target; LOKET_WRITE_FUZZ_CORPUS=1 also writes them into the corpus that
/// `cargo fuzz` starts from.
#[test]
fn the_seeds_from_the_examples_config_and_gen_run_through_every_target() {
    let write = std::env::var_os("LOKET_WRITE_FUZZ_CORPUS").is_some();
    for (target, name, bytes) in seeds() {
        if write {
            let path = corpus_dir(target).join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let outcome = std::panic::catch_unwind(|| targets::run(target, &bytes));
        assert!(outcome.is_ok(), "{target} panicked on the seed {name}");
    }
}

/// Every input of `dir`, sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_runs_over_its_corpus_without_a_panic_or_a_hang() {
    for target in targets::TARGETS {
        let files = inputs(&corpus_dir(target));
        assert!(!files.is_empty(), "{target}: empty corpus");
        let (done, finished) = mpsc::channel();
        let count = files.len();
        std::thread::spawn(move || {
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| targets::run(target, &data));
                let _ = done.send((file, outcome.is_ok()));
            }
        });
        for _ in 0..count {
            // A generous bound per input: each takes milliseconds; only a hang reaches it.
            let (file, ok) = finished.recv_timeout(Duration::from_secs(60)).expect("a fuzz input hung");
            assert!(ok, "{target} panicked on {}", file.display());
        }
    }
}
