//! Message logs for integration testers, end to end through the `loket` binary and gRPC:
//! gen → replay → export → replay elsewhere with outcome comparison, export filters,
//! offline export, pacing, tamper evidence and malformed input.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use loket_server::proto::{ExportRequest, Outcomes, SubscribeRequest};
use serde_json::Value;

/// Runs the binary off the async threads (the gateway under test shares the runtime).
async fn loket(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loket")).args(&args).stdin(Stdio::null()).output().unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn text(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

async fn gen(dir: &Path, seed: u64, cases: u32) -> PathBuf {
    let out = dir.join(format!("gen-{seed}.ndjson"));
    let o = loket(args(&["gen", "--seed", &seed.to_string(), "--cases", &cases.to_string(), "-o", &p(&out)])).await;
    assert!(o.status.success(), "{}", text(&o));
    out
}

async fn replay(gw: &Gateway, log: &Path, extra: &[&str]) -> Output {
    let mut a = args(&["replay", &p(log), "--server", &gw.url(), "--certs", &p(&gw.certs_dir())]);
    a.extend(args(extra));
    loket(a).await
}

fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("{}", text(out)))
}

async fn export_online(gw: &Gateway, out: &Path, extra: &[&str]) -> Output {
    let mut a = args(&["export", "--server", &gw.url(), "--certs", &p(&gw.certs_dir()), "-o", &p(out)]);
    a.extend(args(extra));
    loket(a).await
}

/// A gateway holding a generated log plus a source mismatch and an id conflict.
async fn loaded_gateway(dir: &Path) -> (Gateway, PathBuf) {
    let gw = Gateway::start_in(&dir.join("a"), "").await;
    let log = gen(dir, 11, 8).await;
    let o = replay(&gw, &log, &["--expect-recorded"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut coa = gw.client("coa").await;
    let bag = example_for("baggage", "9999000099");
    publish(&mut coa, event("dji", "baggage", "not-mine", &bag)).await.unwrap_err();
    publish(&mut coa, event("coa", "baggage", "bag-x", &bag)).await.unwrap();
    let mut other = bag.clone();
    other["pieces"] = 7.into();
    publish(&mut coa, event("coa", "baggage", "bag-x", &other)).await.unwrap_err();
    (gw, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_replay_elsewhere_and_a_schema_change_shows_exactly_the_affected_events() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, log) = loaded_gateway(dir.path()).await;
    let generated = lines(&log);
    let export = dir.path().join("export.ndjson");
    let o = export_online(&gw, &export, &["--all"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let exported = lines(&export);
    // Besides every publish the log holds the gateway's own findings (handover readiness),
    // which a replay leaves to the gateway it replays into.
    let own = exported.iter().filter(|l| l["source"] == "loket").count();
    assert!(
        own > 0 && exported.iter().filter(|l| l["source"] == "loket").all(|l| l["type"] == ns("handover-readiness"))
    );
    assert_eq!(exported.len() - own, generated.len() + 3, "every publish, accepted or refused, is in the log");
    let rejected: Vec<&Value> = exported.iter().filter(|l| l["outcome"] == "rejected").collect();
    let reasons: BTreeSet<&str> = rejected.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.contains("SCHEMA_VIOLATION") && reasons.contains("SOURCE_MISMATCH") && reasons.contains("ID_CONFLICT")
    );
    assert!(exported.iter().all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64)));
    // Rejected events were never delivered: a subscriber sees only the accepted ones (of
    // the types the shipped policy lets dtv receive in full).
    let accepted = exported.iter().filter(|l| l["outcome"] == "accepted" && l["source"] != "loket").count();
    let dtv_types = ["physical-features", "baggage", "transport-status"];
    // Accepted lines name their type in reverse-DNS form.
    let for_dtv = |l: &&Value| l["outcome"] == "accepted" && dtv_types.iter().any(|t| l["type"] == ns(t));
    let dtv_accepted = exported.iter().filter(for_dtv).count();
    let mut sub = gw
        .client("dtv")
        .await
        .subscribe(SubscribeRequest {
            types: dtv_types.iter().map(|t| (*t).to_owned()).collect(),
            limit: dtv_accepted as u64,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut delivered = BTreeSet::new();
    while let Some(d) = sub.message().await.unwrap() {
        let e = d.event.unwrap();
        delivered.insert((e.source, e.id));
    }
    let accepted_ids: BTreeSet<(String, String)> = exported
        .iter()
        .filter(for_dtv)
        .map(|l| (l["source"].as_str().unwrap().to_owned(), l["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(delivered, accepted_ids);
    gw.stop().await;

    // A fresh gateway gives every event the recorded outcome.
    let fresh = Gateway::start_in(&dir.path().join("b"), "").await;
    let o = replay(&fresh, &export, &["--expect-recorded"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["mismatches"], 0, "{}", text(&o));
    assert_eq!((s["sent"].as_u64(), s["gateway"].as_u64()), (Some((exported.len() - own) as u64), Some(own as u64)));
    assert_eq!(s["accepted"], accepted);
    assert_eq!(s["rejected"], rejected.len());
    fresh.stop().await;

    // One schema now also expects who the baggage was handed over to, which no generated
    // event fills in: exactly the accepted baggage events change.
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    for entry in std::fs::read_dir(repo_root().join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, schemas.join(path.file_name().unwrap())).unwrap();
        }
    }
    let baggage = schemas.join("baggage.v1.json");
    let mut schema: Value = serde_json::from_slice(&std::fs::read(&baggage).unwrap()).unwrap();
    let expected = schema["x-loket-expected"].as_array_mut().unwrap();
    expected.push("/handedOverTo".into());
    std::fs::write(&baggage, serde_json::to_vec_pretty(&schema).unwrap()).unwrap();
    let changed = Gateway::start_in(&dir.path().join("c"), &format!("[schemas]\ndir = {:?}\n", p(&schemas))).await;
    let diff = dir.path().join("diff.ndjson");
    let o = replay(&changed, &export, &["--expect-recorded", "--diff", &p(&diff)]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want: BTreeSet<u64> = exported
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l["type"] == ns("baggage") && l["outcome"] == "accepted" && l["data"].get("handedOverTo").is_none()
        })
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let diffs = lines(&diff);
    let got: BTreeSet<u64> = diffs.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert_eq!(summary(&o)["mismatches"], want.len());
    assert!(diffs.iter().all(|d| d["differs"] == serde_json::json!(["completeness"])), "{diffs:?}");
    changed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_filters_and_offline_export_equals_online() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = loaded_gateway(dir.path()).await;
    let all_file = dir.path().join("all.ndjson");
    assert!(export_online(&gw, &all_file, &["--all"]).await.status.success());
    let all = lines(&all_file);
    let case = all[0]["subject"].as_str().unwrap().to_owned();
    let middle =
        all.iter().filter(|l| l["outcome"] == "accepted").nth(10).unwrap()["receivedat"].as_str().unwrap().to_owned();
    let filters: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--all"],
        vec!["--rejected"],
        vec!["--type", "transport-status"],
        vec!["--source", "dvo,kmar", "--all"],
        vec!["--case", &case, "--all"],
        vec!["--from", "5", "--to", "12"],
        vec!["--from", &middle, "--all"],
    ];
    let mut online = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let out = dir.path().join(format!("online-{i}.ndjson"));
        let o = export_online(&gw, &out, f).await;
        assert!(o.status.success(), "{f:?}: {}", text(&o));
        online.push(std::fs::read(&out).unwrap());
    }
    let check = |i: usize, pred: &dyn Fn(&Value) -> bool| {
        let got: Vec<Value> =
            String::from_utf8_lossy(&online[i]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let want: Vec<&Value> = all.iter().filter(|l| pred(l)).collect();
        assert!(!want.is_empty(), "filter {:?} selects nothing", filters[i]);
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "filter {:?}", filters[i]);
    };
    check(0, &|l| l["outcome"] == "accepted");
    check(2, &|l| l["outcome"] == "rejected");
    check(3, &|l| l["outcome"] == "accepted" && l["type"] == ns("transport-status"));
    check(4, &|l| l["source"] == "dvo" || l["source"] == "kmar");
    check(5, &|l| l["subject"] == case.as_str());
    // The profile's sequence: 20 zero-padded digits, with its sequencetype.
    check(6, &|l| {
        l["sequencetype"] == "DecimalU64"
            && l["sequence"].as_str().is_some_and(|s| s.len() == 20 && (5..=12).contains(&s.parse::<u64>().unwrap()))
    });
    // As instants: RFC 3339 text drops trailing zeros of the fraction, so it does not sort.
    let micros = |t: &str| loket_domain::time::parse_rfc3339(t).unwrap();
    check(7, &|l| micros(l["receivedat"].as_str().unwrap()) >= micros(&middle));

    // Only the configured exporters (default: quality) may export.
    let mut dtv = gw.client("dtv").await;
    let status = dtv.export(ExportRequest { outcomes: Outcomes::All as i32, ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&status), "EXPORT_NOT_ALLOWED");
    let o = export_online(&gw, &dir.path().join("denied.ndjson"), &["--as", "dtv"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let data_dir = gw.data_dir.clone();
    gw.stop().await;
    for (i, f) in filters.iter().enumerate() {
        let out = dir.path().join(format!("offline-{i}.ndjson"));
        let mut a = args(&["export", "--data", &p(&data_dir), "-o", &p(&out)]);
        a.extend(args(f));
        let o = loket(a).await;
        assert!(o.status.success(), "{f:?}: {}", text(&o));
        assert_eq!(std::fs::read(&out).unwrap(), online[i], "offline differs from online for {f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_original_keeps_the_recorded_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let log = gen(dir.path(), 5, 3).await;
    // Five events, re-timed with gaps of 0.4, 1.2, 0.4 and 0.8 s.
    let offsets_ms = [0i64, 400, 1600, 2000, 2800];
    let mut paced = String::new();
    for (line, offset) in lines(&log).into_iter().filter(|l| l["outcome"] == "accepted").zip(offsets_ms) {
        let mut line = line;
        let t =
            time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + time::Duration::milliseconds(offset);
        line["receivedat"] = t.format(&time::format_description::well_known::Rfc3339).unwrap().into();
        paced.push_str(&serde_json::to_string(&line).unwrap());
        paced.push('\n');
    }
    let paced_file = dir.path().join("paced.ndjson");
    std::fs::write(&paced_file, &paced).unwrap();
    let gw = Gateway::start_in(&dir.path().join("gw"), "").await;
    let o = replay(&gw, &paced_file, &["--rate", "original", "--expect-recorded"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let export = dir.path().join("replayed.ndjson");
    assert!(export_online(&gw, &export, &[]).await.status.success());
    let replayed = lines(&export);
    let sent: Vec<Value> = paced.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        replayed.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(),
        sent.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(),
        "replayed in the recorded order"
    );
    let micros = |l: &Value| {
        let t = time::OffsetDateTime::parse(
            l["receivedat"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (t.unix_timestamp_nanos() / 1000) as f64
    };
    let gaps: Vec<f64> = replayed.windows(2).map(|w| micros(&w[1]) - micros(&w[0])).collect();
    let total: f64 = gaps.iter().sum();
    // Each gap's share of the whole, against the recorded shares (0.4/2.8, 1.2/2.8, ...).
    for (gap, recorded) in gaps.iter().zip([400.0, 1200.0, 400.0, 800.0]) {
        let share = gap / total;
        let want = recorded / 2800.0;
        assert!((share - want).abs() < 0.08, "gap shares {:?} vs recorded 1:3:1:2", gaps);
    }
    gw.stop().await;
}

/// Rewrites the events tree of a stopped gateway's journal record by record.
fn tamper(data_dir: &Path, edit: impl FnOnce(&mut Vec<loket_journal::StoredEvent>)) {
    use prost::Message;
    let db = sled::open(data_dir.join("journal")).unwrap();
    let events = db.open_tree("events").unwrap();
    let mut records = Vec::new();
    for item in events.iter() {
        let (_, chunk) = item.unwrap();
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            records.push(loket_journal::StoredEvent::decode_length_delimited(&mut rest).unwrap());
        }
    }
    events.clear().unwrap();
    edit(&mut records);
    let mut buf = Vec::new();
    for r in &records {
        r.encode_length_delimited(&mut buf).unwrap();
    }
    events.insert(1u64.to_be_bytes(), buf).unwrap();
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = loaded_gateway(dir.path()).await;
    let export = dir.path().join("export.ndjson");
    assert!(export_online(&gw, &export, &["--all"]).await.status.success());
    let data_dir = gw.data_dir.clone();
    gw.stop().await;
    let verify = |extra: Vec<String>| async move {
        let mut a = args(&["audit", "verify"]);
        a.extend(extra);
        loket(a).await
    };
    let o = verify(args(&["--data", &p(&data_dir)])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("chain intact"), "{}", text(&o));
    let o = verify(args(&["--log", &p(&export)])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // An exported log with one byte changed.
    let mut bytes = std::fs::read(&export).unwrap();
    let at = bytes.windows(9).position(|w| w == b"\"pieces\":").unwrap() + 9;
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let tampered_export = dir.path().join("tampered.ndjson");
    std::fs::write(&tampered_export, &bytes).unwrap();
    let o = verify(args(&["--log", &p(&tampered_export)])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("line {line}:")), "{}", text(&o));

    // An exported log with one line removed: found in a complete log; a filtered export
    // (--partial) may skip positions.
    let exported = std::fs::read_to_string(&export).unwrap();
    let mut kept: Vec<&str> = exported.lines().collect();
    let removed: Value = serde_json::from_str(kept.remove(4)).unwrap();
    let shortened = dir.path().join("shortened.ndjson");
    std::fs::write(&shortened, kept.join("\n")).unwrap();
    let o = verify(args(&["--log", &p(&shortened)])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let missing = format!("chain position {} is missing", removed["chain"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&missing), "{}", text(&o));
    let o = verify(args(&["--log", &p(&shortened), "--partial"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 gaps"), "{}", text(&o));

    // One byte of one stored event's payload, on disk.
    let copy = dir.path().join("altered");
    copy_dir(&data_dir, &copy);
    tamper(&copy, |records| records[6].data[3] ^= 0x01);
    let o = verify(args(&["--data", &p(&copy)])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("accepted event sequence 7") && out.contains("altered"), "{}", text(&o));

    // One stored event removed.
    let copy = dir.path().join("removed");
    copy_dir(&data_dir, &copy);
    let mut removed_position = 0;
    tamper(&copy, |records| removed_position = records.remove(9).chain);
    let o = verify(args(&["--data", &p(&copy)])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("chain position {removed_position} is missing")), "{}", text(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replay_lines_are_reported_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = gen(dir.path(), 9, 2).await;
    let good: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().take(4).map(str::to_owned).collect();
    let mut no_outcome: Value = serde_json::from_str(&good[2]).unwrap();
    no_outcome.as_object_mut().unwrap().remove("outcome");
    let text_in = [
        good[0].clone(),
        "this is not json".to_owned(),
        good[1].clone(),
        serde_json::to_string(&no_outcome).unwrap(),
        good[3].clone(),
    ]
    .join("\n");
    let file = dir.path().join("broken.ndjson");
    std::fs::write(&file, text_in).unwrap();
    let gw = Gateway::start_in(&dir.path().join("gw"), "").await;
    let o = replay(&gw, &file, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("broken.ndjson:2:"), "{stderr}");
    assert!(stderr.contains("broken.ndjson:4:") && stderr.contains("outcome"), "{stderr}");
    let s = summary(&o);
    assert_eq!((s["sent"].as_u64(), s["malformed"].as_u64()), (Some(3), Some(2)), "{}", text(&o));
    // Over gRPC too: the three good lines are in the log.
    let mut stream = gw.client("quality").await.export(ExportRequest::default()).await.unwrap().into_inner();
    let mut exported = 0;
    while stream.message().await.unwrap().is_some() {
        exported += 1;
    }
    assert_eq!(exported, 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_with_the_same_seed_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(gen(dir.path(), 42, 12).await).unwrap();
    std::fs::rename(dir.path().join("gen-42.ndjson"), dir.path().join("first.ndjson")).unwrap();
    let b = std::fs::read(gen(dir.path(), 42, 12).await).unwrap();
    let c = std::fs::read(gen(dir.path(), 43, 12).await).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let log = String::from_utf8(a).unwrap();
    let mut sizes: Vec<usize> = log.lines().map(str::len).collect();
    sizes.sort();
    let median = sizes[sizes.len() / 2];
    assert!((500..2000).contains(&median), "realistic event size, median line {median} bytes");
    let parsed: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sources: BTreeSet<&str> = parsed.iter().map(|l| l["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["coa", "dji", "dtv", "dvo", "gza", "kmar"].into_iter().collect());
    assert!(parsed.iter().any(|l| l["outcome"] == "rejected"));
    assert!(parsed.iter().any(|l| l["missingexpected"].as_str().is_some_and(|m| !m.is_empty())));
    assert!(parsed.iter().all(|l| l["subject"].as_str().unwrap().starts_with("9999")), "synthetic V-numbers only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_different_seeds_share_no_case_and_no_id() {
    let dir = tempfile::tempdir().unwrap();
    let read = |path: PathBuf| -> Vec<Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (a, b) = (read(gen(dir.path(), 11, 20).await), read(gen(dir.path(), 12, 20).await));
    let of =
        |log: &[Value], key: &str| log.iter().map(|l| l[key].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>();
    assert!(of(&a, "subject").is_disjoint(&of(&b, "subject")), "V-numbers shared");
    assert!(of(&a, "id").is_disjoint(&of(&b, "id")), "event ids shared");
    // Replayed into one gateway, the second log is accepted as recorded, not as conflicts.
    let gw = Gateway::start().await;
    for seed in [11, 12] {
        let o = replay(&gw, &dir.path().join(format!("gen-{seed}.ndjson")), &["--expect-recorded"]).await;
        assert_eq!(o.status.code(), Some(0), "seed {seed}: {}", text(&o));
        assert_eq!(summary(&o)["mismatches"], 0);
    }
    gw.stop().await;
    let o = loket(args(&["gen", "--seed", "1", "--cases", "10", "--first-case", "999995"])).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("do not fit the six digits"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let o = loket(args(&["demo", "--cases", "4", "--show", "2"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("mismatches 0"), "{out}");
    assert!(out.contains("== kmar subscribed to") && out.contains("== dvo subscribed to"), "{out}");
    assert!(out.contains("completeness per type:"), "{out}");
    assert!(out.contains("== handover readiness") && out.contains("detention-to-departure"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_testers_export_is_pseudonymised_replays_without_mismatches_and_every_export_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let gw =
        Gateway::start_in(&dir.path().join("a"), "[export]\nauditors = [\"quality\"]\ntesters = [\"dvo\"]\n").await;
    let log = gen(dir.path(), 13, 6).await;
    let o = replay(&gw, &log, &["--expect-recorded"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A medical file no recipient was given (the consent it names does not exist).
    let mut gza = gw.client("gza").await;
    let mut file = example_for("medical-file-transfer", "9999000077");
    file["consentId"] = "no-such-consent".into();
    file["attentionPoints"] = serde_json::json!(["withheld secret diagnosis"]);
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-withheld", &file)).await.unwrap();

    let tester = dir.path().join("tester.ndjson");
    let o = export_online(&gw, &tester, &["--all", "--as", "dvo"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let auditor = dir.path().join("auditor.ndjson");
    let o = export_online(&gw, &auditor, &["--all"]).await;
    assert!(o.status.success(), "{}", text(&o));

    // The tester's bytes hold no original V-number and no medical free text.
    let bytes = std::fs::read_to_string(&tester).unwrap();
    let full = std::fs::read_to_string(&auditor).unwrap();
    let cases: BTreeSet<String> = lines(&log).iter().map(|l| l["subject"].as_str().unwrap().to_owned()).collect();
    for case in cases.iter().map(String::as_str).chain(["9999000077"]) {
        assert!(full.contains(case), "the auditor's export is complete: {case}");
        assert!(!bytes.contains(case), "V-number {case} in the tester's export");
    }
    for text in
        ["needs glasses for reading", "afraid of flying", "prefers a female doctor", "withheld secret diagnosis"]
    {
        assert!(!bytes.contains(text), "medical text {text:?} in the tester's export");
    }
    assert!(full.contains("withheld secret diagnosis"));
    let tester_lines = lines(&tester);
    let auditor_lines = lines(&auditor);
    assert_eq!(tester_lines.len(), auditor_lines.len(), "every entry, pseudonymised");
    assert!(auditor_lines.iter().all(|l| l["hash"].as_str().is_some()));
    assert!(tester_lines.iter().all(|l| l["pseudonymised"] == true && l.get("hash").is_none()));
    let omitted: Vec<&Value> = tester_lines.iter().filter(|l| l["omitted"] == true).collect();
    // The withheld file, and generated files no one was given (e.g. without addressee).
    assert!(omitted.iter().any(|l| l["id"] == "mft-withheld"), "{omitted:?}");
    assert!(omitted.iter().all(|l| l["type"] == ns("medical-file-transfer") && l.get("data").is_none()));

    // Replayed against a fresh gateway: every outcome as recorded.
    let fresh = Gateway::start_in(&dir.path().join("b"), "").await;
    let o = replay(&fresh, &tester, &["--expect-recorded"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!((s["mismatches"].as_u64(), s["omitted"].as_u64()), (Some(0), Some(omitted.len() as u64)), "{s}");
    // The gateway's own events (handover findings) are not sent either: the fresh gateway
    // derives its own.
    let gateway = tester_lines.iter().filter(|l| l["source"] == "loket").count();
    assert!(gateway > 0, "the generated departures are handovers");
    assert_eq!(s["gateway"].as_u64(), Some(gateway as u64), "{s}");
    assert_eq!(s["sent"].as_u64(), Some((tester_lines.len() - omitted.len() - gateway) as u64), "{s}");

    // Both exports are recorded: the auditor lists them all, the tester its own.
    let audit = |partner: &str| {
        args(&["audit", "exports", "--server", &gw.url(), "--certs", &p(&gw.certs_dir()), "--as", partner])
    };
    let o = loket(audit("quality")).await;
    assert!(o.status.success(), "{}", text(&o));
    let records: Vec<Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(String, String, u64, String)> = records
        .iter()
        .map(|r| {
            (
                r["partner"].as_str().unwrap().to_owned(),
                r["mode"].as_str().unwrap().to_owned(),
                r["entries"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let n = tester_lines.len() as u64;
    assert_eq!(
        summary,
        [
            ("dvo".into(), "pseudonymised".into(), n, "completed".into()),
            ("quality".into(), "full".into(), n, "completed".into())
        ]
    );
    assert!(records.iter().all(|r| r["filters"] == "outcomes=ALL"), "{records:?}");
    let o = loket(audit("dvo")).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "{}", text(&o));
    // Someone who may not export is refused, and that is in the denial log.
    let o = export_online(&gw, &dir.path().join("no.ndjson"), &["--as", "kmar"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    gw.stop().await;
    fresh.stop().await;
}

/// The NL GOV profile's reverse-DNS name of a type, as exported lines carry it.
fn ns(event_type: &str) -> String {
    format!("nl.vreemdelingenketen.{event_type}")
}
