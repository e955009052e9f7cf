//! Bounded growth through the real interface: the dedup window and the rejection log's
//! payload cap (`[journal]`), retention (`[retention]`: expiry from every store, including
//! what the handover state derived; periods from a case's last event) and erasure by case.
//! The disk-space floor is in disk.rs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use loket_journal::{Journal, JournalConfig};
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use sha2::{Digest, Sha256};
use tonic::Code;

fn baggage(id: &str, case: &str) -> loket_server::proto::CloudEvent {
    event("dji", "baggage", id, &example_for("baggage", case))
}

/// The rejections a stopped gateway's journal holds.
fn rejections(data_dir: &Path) -> Vec<loket_journal::StoredRejection> {
    let journal = Journal::open(&JournalConfig { dir: data_dir.join("journal"), ..JournalConfig::default() }).unwrap();
    let all = journal.read_rejections_from(1, 1000).unwrap();
    journal.close().unwrap();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_counts_only_inside_the_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[journal]\ndedup_window = \"2s\"\n").await;
    let mut client = gw.client("dji").await;
    let first = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(!first.duplicate);
    let again = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(again.duplicate, "a resend inside the window is the same event");
    assert_eq!(again.sequence, first.sequence);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert!(!later.duplicate, "after the window the same id is a new event");
    assert!(later.sequence > first.sequence);
    // And the new one is the original within its own window.
    let resend = publish(&mut client, baggage("bag-1", "0000000001")).await.unwrap();
    assert_eq!((resend.duplicate, resend.sequence), (true, later.sequence));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_large_publish_keeps_only_the_configured_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[journal]\nrejection_payload_bytes = 1000\n").await;
    let mut client = gw.client("dji").await;
    let mut data = example_for("baggage", "0000000002");
    data["pieces"] = serde_json::Value::String("x".repeat(200_000));
    let refused = event("dji", "baggage", "big-1", &data);
    let payload = refused.data.clone();
    assert!(payload.len() > 200_000);
    let status = publish(&mut client, refused).await.unwrap_err();
    assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "SCHEMA_VIOLATION"));
    gw.stop().await;
    let stored = rejections(dir.path());
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(r.id, "big-1");
    assert_eq!(r.data, payload[..1000], "the first configured bytes are kept");
    assert_eq!(r.data_size, payload.len() as u64);
    assert_eq!(r.data_sha256, Sha256::digest(&payload).to_vec());
    // The journal's files hold no more than a small part of what was refused.
    let on_disk = dir_size(&dir.path().join("journal"));
    assert!(on_disk < payload.len() as u64 * 4, "journal takes {on_disk} bytes");
    let report = loket_journal::audit::verify_dir(&dir.path().join("journal")).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.metadata().unwrap().is_dir() { dir_size(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

fn loket_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loket"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_events_of_a_type_leave_every_store_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // No digests or handover findings: the gateway's own events would sit between these.
    let config = "[quality]\ndigest_interval_secs = 0\nchain_dir = \"no-handovers\"\n\
                  [retention]\ncompact_every = \"1s\"\n\
                  [retention.types]\nbaggage = \"3s\"\n\"medical-file-transfer\" = \"3s\"\n";
    let gw = Gateway::start_in(&data_dir, config).await;
    let mut dji = gw.client("dji").await;
    let case = "0000000042";
    // One event per batch (each awaited), so each is its own chunk: the first baggage event
    // goes from the front, the ones after the transport status lose their payload in place.
    let b1 = publish(&mut dji, event("dji", "baggage", "old-bag-1", &example_for("baggage", case))).await.unwrap();
    let t1 = publish(&mut dji, event("dji", "transport-status", "kept-ts", &example_for("transport-status", case)))
        .await
        .unwrap();
    let b2 = publish(&mut dji, event("dji", "baggage", "old-bag-2", &example_for("baggage", case))).await.unwrap();
    let medical = example_for("medical-file-transfer", case);
    let m1 = publish(&mut dji, event("dji", "medical-file-transfer", "old-mft", &medical)).await.unwrap();
    assert_eq!((b1.sequence, t1.sequence, b2.sequence, m1.sequence), (1, 2, 3, 4));

    // Subscriptions from the start: once compaction ran, they start at the retained range,
    // are told so, and never see an expired event.
    let types = ["baggage", "transport-status", "medical-file-transfer"].map(String::from).to_vec();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        let req = SubscribeRequest {
            types: types.clone(),
            start: Some(Start::Earliest(Earliest {})),
            limit: 1,
            ..Default::default()
        };
        let mut stream = dji.subscribe(req).await.unwrap().into_inner();
        let d = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        if d.first_retained != 0 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "compaction never removed the expired front");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((first.first_retained, first.sequence), (2, 2), "starts at the transport status");
    // Nothing after it is delivered: the expired baggage and medical file are gone. A fresh
    // event shows the stream is live.
    let fresh = publish(&mut dji, event("dji", "transport-status", "fresh-ts", &example_for("transport-status", case)))
        .await
        .unwrap();
    let req = SubscribeRequest { types, start: Some(Start::Sequence(1)), limit: 2, ..Default::default() };
    let mut stream = dji.subscribe(req).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap() {
        seen.push((d.sequence, d.first_retained));
    }
    assert_eq!(seen, [(2, 2), (fresh.sequence, 0)]);
    gw.stop().await;

    // The export shows the purged ones as such, with their hashes, and not the removed one.
    let out = dir.path().join("export.ndjson");
    let o = loket_cli(&["export", "--data", data_dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["kept-ts", "old-bag-2", "old-mft", "fresh-ts"]);
    for line in &lines[1..3] {
        assert_eq!(line["purgedby"], 1, "{line}");
        assert!(line.get("data").is_none() && line["hash"].is_string(), "{line}");
    }
    assert!(lines[0].get("purgedby").is_none() && lines[0]["data"].is_object());
    let o = loket_cli(&["audit", "verify", "--log", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // The journal's chain verifies and names what expired and by which record.
    let o = loket_cli(&["audit", "verify", "--data", data_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(
            "expired: chain positions 1..=1 (events before sequence 2, rejections before 1) removed by purge record 1"
        ),
        "{text}"
    );
    assert!(text.contains("purge record 1 expired"), "{text}");
    assert!(text.contains("payload removed by purge record 1 (links checked, content no longer hashable): accepted event sequence 3, accepted event sequence 4"), "{text}");
    assert!(text.contains("chain intact"), "{text}");

    // The access index no longer holds its copy of the medical payload.
    let access = sled::open(data_dir.join("access")).unwrap();
    let gated = access.open_tree("gated").unwrap();
    let sequences: Vec<u64> =
        gated.iter().map(|kv| u64::from_be_bytes(kv.unwrap().0[case.len() + 1..].try_into().unwrap())).collect();
    assert!(!sequences.contains(&m1.sequence), "{sequences:?}");
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_case_leaves_no_payload_byte_and_tells_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = Gateway::start_in(&data_dir, "[quality]\ndigest_interval_secs = 0\n").await;
    let marker = "MARKER-e7c1-ERASE-THIS-CASE";
    let (erased, kept) = ("0000000077", "0000000078");
    let mut dji = gw.client("dji").await;
    let mut bag = example_for("baggage", erased);
    bag["storageLocation"] = marker.into();
    let b = publish(&mut dji, event("dji", "baggage", "erase-bag", &bag)).await.unwrap();
    let mut mft = example_for("medical-file-transfer", erased);
    mft["attentionPoints"] = serde_json::json!([marker]);
    let m = publish(&mut dji, event("dji", "medical-file-transfer", "erase-mft", &mft)).await.unwrap();
    // Refused, with a violation message that quotes the V-number the payload names (which
    // differs from the subject): the rejection's texts hold it, not only its excerpt.
    let quoted = "7707707707";
    let mut bad = bag.clone();
    bad["pieces"] = "several".into();
    bad["vNumber"] = quoted.into();
    let mut refused = event("dji", "baggage", "erase-refused", &bad);
    refused.subject = erased.to_owned();
    let status = publish(&mut dji, refused).await.unwrap_err();
    assert!(violation_fields(&status).contains(&"/vNumber".to_owned()), "{status:?}");
    let other = publish(&mut dji, event("dji", "baggage", "keep-bag", &example_for("baggage", kept))).await.unwrap();

    // Only auditors erase; a reason is required.
    let url = gw.url();
    let certs = gw.certs_dir();
    let erase = |partner: &str, case: &str, reason: &str| {
        loket_cli(&[
            "erase",
            "--server",
            &url,
            "--certs",
            certs.to_str().unwrap(),
            "--as",
            partner,
            "--case",
            case,
            "--reason",
            reason,
        ])
    };
    let o = erase("dji", erased, "legal ground ended");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("ERASURE_NOT_ALLOWED"));
    let o = erase("quality", erased, " ");
    assert_eq!(o.status.code(), Some(2));
    let o = erase("quality", erased, "residence permit granted: legal ground for the departure file ended");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(reply["erasure"], 1);
    assert_eq!(reply["sequences"], serde_json::json!([b.sequence, m.sequence]));
    assert_eq!(reply["rejections"].as_array().unwrap().len(), 1);
    let notice = reply["notice"].as_u64().unwrap();

    // A subscriber reading from the start gets the kept event and, at the notice, a
    // tombstone per erased event it receives; never the erased payloads.
    let types = ["baggage", "medical-file-transfer"].map(String::from).to_vec();
    let req = SubscribeRequest { types, start: Some(Start::Earliest(Earliest {})), limit: 3, ..Default::default() };
    let mut stream = dji.subscribe(req).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap() {
        let e = d.event.unwrap();
        assert!(!String::from_utf8_lossy(&e.data).contains(marker));
        seen.push((d.sequence, d.tombstone, d.position, e.id, e.data.is_empty()));
    }
    assert_eq!(
        seen,
        [
            (other.sequence, false, other.sequence, "keep-bag".to_owned(), false),
            (b.sequence, true, notice, "erase-bag".to_owned(), true),
            (m.sequence, true, notice, "erase-mft".to_owned(), true),
        ]
    );
    // Erasing it again finds nothing left.
    let o = erase("quality", erased, "again");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CASE_NOT_FOUND"));
    gw.stop().await;

    let found = files_containing(&data_dir, marker.as_bytes());
    assert!(found.is_empty(), "payload bytes of the erased case remain in {found:?}");
    let found = files_containing(&data_dir, quoted.as_bytes());
    assert!(found.is_empty(), "the rejection's message of the erased case remains in {found:?}");
    let o = loket_cli(&["audit", "verify", "--data", data_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{text}");
    assert!(text.contains("purge record 1 erased at"), "{text}");
    assert!(text.contains(&format!("by quality case {erased}: residence permit granted")), "{text}");
    assert!(text.contains("chain intact"), "{text}");
}

/// The case pages the chain view links to: (pseudonym, page).
fn case_pages(gw: &Gateway) -> Vec<(String, String)> {
    let addr = gw.metrics_addr.unwrap();
    let (code, chain) = http_get(addr, "/quality/chain");
    assert_eq!(code, 200, "{chain}");
    let mut pages: Vec<(String, String)> = chain
        .split("href=\"/quality/case/")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .map(|p| (p.clone(), http_get(addr, &format!("/quality/case/{p}")).1))
        .collect();
    pages.dedup();
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_case_leaves_no_handover_state() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // Transports expire, baggage stays: a case of transports alone goes entirely, a case
    // with baggage keeps its baggage and loses the handover its transport triggered.
    let config = "[quality]\ndigest_interval_secs = 0\n[retention]\ncompact_every = \"1s\"\n\
                  [retention.types]\n\"transport-status\" = \"3s\"\n";
    let gw = Gateway::start_in(&data_dir, config).await;
    let (gone, kept) = ("0000000091", "0000000092");
    let mut dvo = gw.client("dvo").await;
    publish(&mut dvo, event("dvo", "transport-status", "gone-ts", &example_for("transport-status", gone)))
        .await
        .unwrap();
    publish(&mut dvo, event("dvo", "baggage", "kept-bag", &example_for("baggage", kept))).await.unwrap();
    publish(&mut dvo, event("dvo", "transport-status", "kept-ts", &example_for("transport-status", kept)))
        .await
        .unwrap();
    let pages = case_pages(&gw);
    assert_eq!(pages.len(), 2, "{pages:?}");
    let (bag, ts) = ("data-type=\"baggage\"", "data-type=\"transport-status\"");
    let (gone_p, kept_p) = if pages[0].1.contains(bag) { (&pages[1], &pages[0]) } else { (&pages[0], &pages[1]) };
    assert!(kept_p.1.contains(bag) && !gone_p.1.contains(bag) && !gone_p.1.contains("No handover yet"), "{pages:?}");

    let addr = gw.metrics_addr.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while http_get(addr, &format!("/quality/case/{}", gone_p.0)).0 != 404 {
        assert!(std::time::Instant::now() < deadline, "the expired case's page stays");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, page) = http_get(addr, &format!("/quality/case/{}", kept_p.0));
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(bag) && page.contains("No handover yet") && !page.contains(ts), "{page}");
    let linked: Vec<String> = case_pages(&gw).into_iter().map(|(p, _)| p).collect();
    assert!(!linked.contains(&gone_p.0) && !linked.contains(&kept_p.0), "expired handovers are not listed: {linked:?}");
    assert!(metric(addr, "loket_retention_removed_total", &[("store", "handover_cases")]).unwrap() >= 1.0);
    assert!(metric(addr, "loket_retention_removed_total", &[("store", "handovers")]).unwrap() >= 2.0);
    gw.stop().await;

    // No tree of the quality store holds the expired case's V-number or pseudonym; the
    // kept case is still there.
    let quality = sled::open(data_dir.join("quality")).unwrap();
    let holding =
        |needle: &[u8]| -> Vec<String> {
            let trees = quality.tree_names().into_iter();
            trees
                .filter(|name| {
                    quality.open_tree(name).unwrap().iter().map(Result::unwrap).any(|(k, v)| {
                        [k.as_ref(), v.as_ref()].iter().any(|b| b.windows(needle.len()).any(|w| w == needle))
                    })
                })
                .map(|name| String::from_utf8_lossy(&name).into_owned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
    assert_eq!(holding(gone.as_bytes()), Vec::<String>::new());
    assert_eq!(holding(gone_p.0.as_bytes()), Vec::<String>::new());
    assert_eq!(holding(kept.as_bytes()), ["chain-pseudonyms", "chain-sequences", "chain-state", "chain-timeline"]);
}

/// The ids of the medical files `client` (their publisher) is delivered from the start,
/// as far as they arrive within a short wait.
async fn medical_ids(client: &mut loket_server::client::Client) -> Vec<String> {
    let req = SubscribeRequest {
        types: vec!["medical-file-transfer".to_owned()],
        start: Some(Start::Earliest(Earliest {})),
        limit: 2,
        ..Default::default()
    };
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    let mut ids = Vec::new();
    while let Ok(Some(d)) =
        tokio::time::timeout(Duration::from_millis(1500), stream.message()).await.unwrap_or(Ok(None))
    {
        ids.push(d.event.unwrap().id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medical_file_counted_from_its_case_lives_while_the_case_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[quality]\ndigest_interval_secs = 0\nchain_dir = \"no-handovers\"\n\
                  [retention]\ncompact_every = \"500ms\"\n[retention.types]\n\
                  \"medical-file-transfer\" = { period = \"4s\", from = \"case-last-event\" }\n";
    let gw = Gateway::start_in(dir.path(), config).await;
    let mut dji = gw.client("dji").await;
    let (alive, quiet) = ("0000000101", "0000000102");
    for (id, case) in [("alive-mft", alive), ("quiet-mft", quiet)] {
        publish(&mut dji, event("dji", "medical-file-transfer", id, &example_for("medical-file-transfer", case)))
            .await
            .unwrap();
    }
    assert_eq!(medical_ids(&mut dji).await, ["alive-mft", "quiet-mft"]);
    // The alive case keeps having events (baggage, kept forever); the quiet one has none.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for n in 0.. {
        publish(&mut dji, baggage(&format!("alive-bag-{n}"), alive)).await.unwrap();
        let ids = medical_ids(&mut dji).await;
        if ids == ["alive-mft"] {
            break;
        }
        assert_eq!(ids, ["alive-mft", "quiet-mft"], "the alive case's file stays while the case has events");
        assert!(std::time::Instant::now() < deadline, "the quiet case's file never expired");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Once the alive case is quiet too, its file goes as well.
    while !medical_ids(&mut dji).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the alive case's file never expired after its last event");
    }
    gw.stop().await;
}
