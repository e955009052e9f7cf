//! Crash safety: `kill -9` of a loaded gateway, repeated, loses no acknowledged event,
//! keeps per-case order and stores no event twice.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};

const PUBLISHERS: &[&str] = &["dtv", "kmar", "dji", "dvo"];
const CASES_PER_PUBLISHER: usize = 4;
const CYCLES: usize = 3;

fn options(gw: &ServeProcess, data_dir: &std::path::Path, partner: &str) -> ClientOptions {
    ClientOptions { server: gw.url(), certs: data_dir.join("certs"), partner: partner.to_owned() }
}

/// What the publishers learned: acked (source, id) → sequence, and ids whose outcome is
/// unknown because the gateway died before answering.
#[derive(Default)]
struct Outcomes {
    acked: HashMap<(String, String), u64>,
    unknown: Vec<(String, String, String)>, // source, id, case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    // Per publisher and case, the next event number: publication order within a case.
    let mut next_number: HashMap<(String, usize), usize> = HashMap::new();

    for cycle in 0..CYCLES {
        let gw = ServeProcess::spawn(&data_dir, "");
        // Resend what a previous crash left unanswered: stored before the crash means a
        // duplicate with its original sequence, lost means stored now.
        let unknown = std::mem::take(&mut outcomes.lock().unwrap().unknown);
        for (source, id, case) in unknown {
            let mut client = connect(&options(&gw, &data_dir, &source)).await.unwrap();
            let reply =
                publish(&mut client, event(&source, "baggage", &id, &example_for("baggage", &case))).await.unwrap();
            outcomes.lock().unwrap().acked.insert((source, id), reply.sequence);
        }

        let mut tasks = Vec::new();
        for (p_index, &p) in PUBLISHERS.iter().enumerate() {
            for c in 0..CASES_PER_PUBLISHER {
                let case = format!("{:010}", p_index * 100 + c);
                let start = *next_number.entry((p.to_owned(), c)).or_default();
                next_number.insert((p.to_owned(), c), start + 10_000);
                let options = options(&gw, &data_dir, p);
                let outcomes = outcomes.clone();
                tasks.push(tokio::spawn(async move {
                    let mut client = connect(&options).await.unwrap();
                    for n in start.. {
                        let id = format!("{p}-{case}-{n:06}");
                        let e = event(p, "baggage", &id, &example_for("baggage", &case));
                        match publish(&mut client, e).await {
                            Ok(reply) => {
                                outcomes.lock().unwrap().acked.insert((p.to_owned(), id), reply.sequence);
                            }
                            Err(_) => {
                                outcomes.lock().unwrap().unknown.push((p.to_owned(), id, case));
                                return;
                            }
                        }
                    }
                }));
            }
        }
        // Let the load build up, then pull the plug.
        let before = outcomes.lock().unwrap().acked.len();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while outcomes.lock().unwrap().acked.len() < before + 300 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw.kill9();
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!("cycle {cycle}: {} events acknowledged so far", outcomes.lock().unwrap().acked.len());
    }

    // Restart once more, resend the unanswered ones, and read everything back.
    let gw = ServeProcess::spawn(&data_dir, "");
    let unknown = std::mem::take(&mut outcomes.lock().unwrap().unknown);
    for (source, id, case) in unknown {
        let mut client = connect(&options(&gw, &data_dir, &source)).await.unwrap();
        let reply = publish(&mut client, event(&source, "baggage", &id, &example_for("baggage", &case))).await.unwrap();
        outcomes.lock().unwrap().acked.insert((source, id), reply.sequence);
    }
    // The return service may publish and receive baggage (the quality team may neither).
    let mut marker_client = connect(&options(&gw, &data_dir, "dtv")).await.unwrap();
    let marker = publish(&mut marker_client, event("dtv", "baggage", "marker", &example("baggage"))).await.unwrap();

    let mut reader = connect(&options(&gw, &data_dir, "dtv")).await.unwrap();
    let request = SubscribeRequest {
        types: vec![],
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: marker.sequence,
    };
    let mut stream = reader.subscribe(request).await.unwrap().into_inner();
    let mut stored = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap() {
        let e = d.event.unwrap();
        stored.push((d.sequence, e.source, e.id, e.subject));
    }

    // Dense sequences, each event once.
    let sequences: Vec<u64> = stored.iter().map(|s| s.0).collect();
    assert_eq!(sequences, (1..=marker.sequence).collect::<Vec<_>>(), "sequences are dense from 1");
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    for (seq, source, id, _) in &stored {
        assert!(seen.insert((source.clone(), id.clone()), *seq).is_none(), "{source}/{id} stored twice");
    }
    // Every acknowledged event is there, under the sequence it was acknowledged with.
    let acked = &outcomes.lock().unwrap().acked;
    assert!(acked.len() >= CYCLES * 300, "the load test produced load: {}", acked.len());
    for (key, seq) in acked {
        assert_eq!(seen.get(key), Some(seq), "acknowledged event {key:?} is missing or moved");
    }
    // Per case, events appear in the order they were published.
    let mut per_case: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (_, source, id, subject) in &stored {
        if source != "quality" {
            per_case.entry((source.clone(), subject.clone())).or_default().push(id.clone());
        }
    }
    for (case, ids) in per_case {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "per-case order broken for {case:?}");
    }
    assert_eq!(gw.terminate(), Some(0));
}
