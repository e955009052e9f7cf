//! The journal's bounds: the dedup window with id index pruning, and the rejection log's
//! payload cap.

use std::path::Path;
use std::time::Duration;

use sha2::Digest;

use crate::*;

fn config(dir: &Path, window: Duration) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        cache_capacity_bytes: 16 << 20,
        max_batch: 64,
        rejection_payload_bytes: 100,
        dedup_window: Some(window),
        recent_bytes: DEFAULT_RECENT_BYTES,
    }
}

fn event(id: &str) -> NewEvent {
    NewEvent {
        source: "urn:p".into(),
        id: id.into(),
        event_type: "t".into(),
        data: b"{}".to_vec(),
        ..NewEvent::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_outside_the_window_are_new_events_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_millis(600))).unwrap();
    assert_eq!(journal.submit(event("a")).await.unwrap().sequence, 1);
    assert_eq!(journal.submit(event("b")).await.unwrap().sequence, 2);
    assert!(journal.submit(event("a")).await.unwrap().duplicate);
    // Nothing is old enough yet.
    assert_eq!(journal.prune_ids().unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = journal.submit(event("a")).await.unwrap();
    assert_eq!((again.sequence, again.duplicate), (3, false));
    assert_eq!(journal.submit(event("c")).await.unwrap().sequence, 4);
    // "b" (sequence 2) is the only entry left from before the window: "a" was taken over.
    assert_eq!(journal.prune_ids().unwrap(), 1);
    assert_eq!(journal.id_index_len().unwrap(), 2);
    assert!(journal.find("urn:p", "b").unwrap().is_none());
    assert_eq!(journal.find("urn:p", "a").unwrap().unwrap().sequence, 3);
    // Within the window the new "a" is the original; across a reopen too.
    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let dup = journal.submit(event("a")).await.unwrap();
    assert_eq!((dup.sequence, dup.duplicate), (3, true));
    assert_eq!(journal.submit(event("b")).await.unwrap().sequence, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_keeps_a_capped_prefix_with_the_full_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(60))).unwrap();
    let payload = vec![b'x'; 200_000];
    let small = b"{\"a\":1}".to_vec();
    for (id, data) in [("big", payload.clone()), ("small", small.clone())] {
        let rejection = NewRejection { source: "urn:p".into(), id: id.into(), data, ..NewRejection::default() };
        journal.reject(rejection).await.unwrap();
    }
    let stored = journal.read_rejections_from(1, 10).unwrap();
    assert_eq!(stored[0].data, payload[..100]);
    assert_eq!(stored[0].data_size, 200_000);
    assert_eq!(stored[0].data_sha256, sha2::Sha256::digest(&payload).to_vec());
    assert_eq!(stored[1].data, small, "a payload under the cap is kept whole");
    assert_eq!(stored[1].data_size, small.len() as u64);
    journal.close().unwrap();
    drop(journal);
    let report = audit::verify_dir(dir.path()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.walk.rejected, 2);
}

fn typed(id: &str, event_type: &str, size: usize) -> NewEvent {
    NewEvent { event_type: event_type.into(), data: vec![b'p'; size], ..event(id) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_leave_the_front_and_their_payload_but_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    // Old: 40 short-lived events (several chunks), a rejection, then a long-lived event
    // among short-lived ones; later: fresh events of both types.
    for i in 0..40 {
        journal.submit(typed(&format!("old-{i}"), "short", 1500)).await.unwrap();
    }
    journal
        .reject(NewRejection { id: "refused".into(), data: b"x".to_vec(), ..NewRejection::default() })
        .await
        .unwrap();
    journal.submit(typed("keep", "long", 10)).await.unwrap();
    journal.submit(typed("old-mixed", "short", 10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now_old = loket_domain::time::now_micros();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = journal.submit(typed("fresh", "short", 10)).await.unwrap().sequence;
    // (The last rejection always stays, so that recovery keeps the numbering.)
    journal.reject(NewRejection { id: "fresh-refused".into(), ..NewRejection::default() }).await.unwrap();
    let policy = RetentionPolicy {
        types: [("short".to_owned(), Duration::from_millis(400))].into_iter().collect(),
        default: None,
        rejections: Some(Duration::from_millis(400)),
        from_case_last_event: Default::default(),
    };
    let outcome = journal.expire(&policy, loket_domain::time::now_micros()).unwrap();
    let record = outcome.record.clone().unwrap();
    assert!(outcome.events_removed > 0 && outcome.events_removed <= 40, "{outcome:?}");
    assert_eq!(outcome.rejections_removed, 1);
    let first = journal.first_retained();
    assert_eq!(first, record.events_below);
    assert!(journal.get(1).unwrap().is_none());
    // Everything read starts at the retained range; expired payloads in kept chunks are gone.
    let rest = journal.read_from(1, 1000).unwrap();
    assert_eq!(rest[0].sequence, first);
    for e in &rest {
        let expired = e.event_type == "short" && e.received_at_micros < now_old;
        assert_eq!(e.purged_by != 0, expired, "{}", e.id);
        assert_eq!(e.data.is_empty(), expired, "{}", e.id);
    }
    assert_eq!(rest.iter().find(|e| e.id == "keep").unwrap().data, b"pppppppppp");
    assert_eq!(rest.last().unwrap().sequence, fresh);
    assert!(journal.first_sequence_at_or_after(0).unwrap() == first);
    // A second pass has nothing left to do.
    assert_eq!(journal.expire(&policy, loket_domain::time::now_micros()).unwrap().record, None);
    assert_eq!(journal.purges().unwrap(), vec![record.clone()]);
    let new = journal.submit(typed("after", "short", 10)).await.unwrap();
    assert_eq!(new.sequence, fresh + 1);
    journal.close().unwrap();
    drop(journal);
    let report = audit::verify_dir(dir.path()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.retained.first_sequence, first);
    assert_eq!(report.purges, vec![record.clone()]);
    assert!(!record.stripped.is_empty());
    assert_eq!(report.walk.purged.len(), record.stripped.len());
    // Reopening keeps the retained range and the numbering.
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    assert_eq!(journal.first_retained(), first);
    assert_eq!(journal.submit(typed("reopened", "short", 10)).await.unwrap().sequence, fresh + 2);
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
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
async fn erasing_a_case_destroys_its_key_and_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let marker = b"MARKER-7f3a9c-ERASE-ME";
    let of = |id: &str, case: &str, data: &[u8]| NewEvent { subject: case.into(), data: data.to_vec(), ..event(id) };
    journal.submit(of("a1", "1111111111", marker)).await.unwrap();
    journal.submit(of("b1", "2222222222", b"{\"keep\":true}")).await.unwrap();
    journal.submit(of("a2", "1111111111", marker)).await.unwrap();
    let refused = NewRejection { subject: "1111111111".into(), data: marker.to_vec(), ..NewRejection::default() };
    journal.reject(refused).await.unwrap();
    let sealed = journal.seal("1111111111", marker).unwrap();
    assert_eq!(journal.unseal(&sealed).unwrap().unwrap(), marker);
    assert_eq!(journal.get(1).unwrap().unwrap().data, marker, "readers get the payload opened");
    journal.close().unwrap();
    drop(journal);
    assert!(files_containing(dir.path(), marker).is_empty(), "payloads are sealed on disk");

    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let record = journal.erase_case("1111111111", "auditor", "legal ground ended", 1).unwrap().unwrap();
    assert_eq!((record.stripped.clone(), record.rejections.clone()), (vec![1, 3], vec![1]));
    assert_eq!(record.kind, "erased");
    for sequence in [1, 3] {
        let e = journal.get(sequence).unwrap().unwrap();
        assert_eq!((e.data.len(), e.purged_by), (0, record.number));
    }
    assert_eq!(journal.get(2).unwrap().unwrap().data, b"{\"keep\":true}");
    assert_eq!(journal.read_rejections_from(1, 1).unwrap()[0].purged_by, record.number);
    assert_eq!(journal.unseal(&sealed).unwrap(), None);
    assert_eq!(journal.erase_case("3333333333", "auditor", "none", 1).unwrap(), None);
    // The id of an erased event is free again; the case gets a new key.
    let again = journal.submit(of("a1", "1111111111", b"{}")).await.unwrap();
    assert_eq!((again.sequence, again.duplicate), (4, false));
    assert_eq!(journal.get(4).unwrap().unwrap().data, b"{}");
    journal.close().unwrap();
    drop(journal);
    let report = audit::verify_dir(dir.path()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    let purged: Vec<_> = report.walk.purged.iter().map(|(e, n)| (e.to_string(), *n)).collect();
    assert_eq!(
        purged,
        [
            ("accepted event sequence 1".to_owned(), 1),
            ("accepted event sequence 3".to_owned(), 1),
            ("rejection 1".to_owned(), 1)
        ]
    );
    assert_eq!(report.purges, vec![record.clone()]);

    // A crash between an erasure's record and its key: the next open destroys the key.
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let sequence = journal.submit(of("c1", "4444444444", marker)).await.unwrap().sequence;
    journal.close().unwrap();
    drop(journal);
    {
        let slot = crate::keys::KeyStore::open(dir.path()).unwrap().current_slot("4444444444").unwrap();
        let store = crate::store::Store::open(&crate::store::StoreConfig {
            dir: dir.path().to_owned(),
            cache_capacity_bytes: 16 << 20,
        })
        .unwrap();
        let interrupted = PurgeRecord { number: 2, key_slot: slot, stripped: vec![sequence], ..record };
        store.purges.insert(crate::event::seq_key(2), prost::Message::encode_to_vec(&interrupted)).unwrap();
        store.db.flush().unwrap();
    }
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    assert_eq!(journal.get(sequence).unwrap().unwrap().purged_by, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_just_after_the_writer_match_sled_and_an_erased_case_is_gone_from_both() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let of = |id: &str, case: &str| NewEvent { data: format!("{{\"id\":\"{id}\"}}").into_bytes(), ..of_case(id, "t", case) };
    for i in 0..20 {
        journal.submit(of(&format!("e{i}"), if i % 2 == 0 { "1111111111" } else { "2222222222" })).await.unwrap();
    }
    // `read_from` answers these from the writer's batches, `get` from sled: the same events.
    let recent = journal.read_from(5, 100).unwrap();
    assert_eq!(recent.iter().map(|e| e.sequence).collect::<Vec<_>>(), (5..=20).collect::<Vec<_>>());
    for e in &recent {
        assert_eq!(Some(e), journal.get(e.sequence).unwrap().as_ref());
    }
    assert_eq!(journal.read_from(19, 1).unwrap().len(), 1);
    assert!(journal.read_from(21, 10).unwrap().is_empty());

    let record = journal.erase_case("1111111111", "auditor", "legal ground ended", 1).unwrap().unwrap();
    for e in journal.read_from(1, 100).unwrap() {
        let erased = e.subject == "1111111111";
        assert_eq!(e.data.is_empty(), erased, "{}", e.sequence);
        assert_eq!(e.purged_by, if erased { record.number } else { 0 });
    }
    // Written after the erasure: read from memory again, under the case's new key.
    journal.submit(of("e20", "1111111111")).await.unwrap();
    let after = journal.read_from(21, 10).unwrap();
    assert_eq!((after.len(), after[0].data.as_slice()), (1, &b"{\"id\":\"e20\"}"[..]));
    journal.close().unwrap();
}

fn of_case(id: &str, event_type: &str, case: &str) -> NewEvent {
    NewEvent { subject: case.into(), ..typed(id, event_type, 10) }
}

#[test]
fn a_period_from_the_case_last_event_counts_from_the_later_of_it_and_the_event() {
    let policy = RetentionPolicy {
        types: [("medical".to_owned(), Duration::from_micros(100)), ("other".to_owned(), Duration::from_micros(100))]
            .into_iter()
            .collect(),
        from_case_last_event: ["medical".to_owned()].into_iter().collect(),
        ..RetentionPolicy::default()
    };
    let stored = |event_type: &str| StoredEvent {
        event_type: event_type.into(),
        received_at_micros: 1000,
        ..StoredEvent::default()
    };
    assert!(!policy.expired(&stored("medical"), 1150, || Some(1100)), "its case had an event since");
    assert!(policy.expired(&stored("medical"), 1250, || Some(1100)));
    assert!(policy.expired(&stored("medical"), 1150, || None), "an unknown case counts from the event");
    assert!(!policy.expired(&stored("medical"), 1050, || Some(900)), "never before its own period");
    assert!(policy.expired(&stored("other"), 1150, || panic!("not read for a type counted from receipt")));
    assert!(!policy.expired(&stored("untyped"), i64::MAX, || None), "no period: kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_event_of_the_case_keeps_an_event_counted_from_the_case_alive() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path(), Duration::from_secs(3600))).unwrap();
    let kept = journal.submit(of_case("a-med", "medical", "A")).await.unwrap().sequence;
    let gone = journal.submit(of_case("b-med", "medical", "B")).await.unwrap().sequence;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = journal.submit(of_case("a-bag", "baggage", "A")).await.unwrap().sequence;
    journal.submit(of_case("tail", "baggage", "C")).await.unwrap();
    let at = |s: u64| journal.get(s).unwrap().unwrap().received_at_micros;
    let period = Duration::from_secs(1000);
    let policy = RetentionPolicy {
        types: [("medical".to_owned(), period)].into_iter().collect(),
        from_case_last_event: ["medical".to_owned()].into_iter().collect(),
        ..RetentionPolicy::default()
    };
    // Past both medical events' own periods, not past A's last event's.
    let now = at(gone).max(at(kept)) + period.as_micros() as i64 + 1;
    assert!(now <= at(later) + period.as_micros() as i64);
    journal.expire(&policy, now).unwrap();
    assert!(!journal.get(kept).unwrap().unwrap().data.is_empty(), "A had an event since");
    assert!(journal.get(gone).unwrap().is_none_or(|e| e.data.is_empty()), "B had none");
    let cases = || journal.inner.shared.store().unwrap().case_last.len();
    assert_eq!(cases(), 2, "B's last event is past the period: its entry decides nothing any more");
    // Past A's last event too: its medical event goes, and no case is needed any more.
    journal.expire(&policy, at(later) + period.as_micros() as i64 + 1).unwrap();
    assert!(journal.get(kept).unwrap().is_none_or(|e| e.data.is_empty()));
    assert_eq!(cases(), 1, "only C's last event is recent enough to matter");
    journal.close().unwrap();
}
