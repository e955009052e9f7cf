use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::event::{id_key_into, seq_key};
use crate::store::{FaultHook, Store, StoreConfig, FLUSHED_MARK};
use crate::*;

fn config(dir: &Path) -> JournalConfig {
    JournalConfig { dir: dir.to_path_buf(), cache_capacity_bytes: 16 << 20, max_batch: 256, ..JournalConfig::default() }
}

fn event(source: &str, id: &str, data: &[u8]) -> NewEvent {
    NewEvent {
        source: source.into(),
        id: id.into(),
        event_type: "nl.example.case.opened".into(),
        schema_version: 1,
        dataschema: "urn:schema:case-opened:1".into(),
        subject: format!("case-{}", id.len()),
        time_micros: Some(1_700_000_000_000_000),
        datacontenttype: "application/json".into(),
        data: data.to_vec(),
        completeness: 0.75,
        missing_expected: vec!["address".into()],
        ..NewEvent::default()
    }
}

fn is_storage(result: &Result<Appended, Error>) -> bool {
    matches!(result, Err(Error::Storage(_)))
}

/// Makes the writer's storage writes fail on demand, and can hold the writer at its next
/// write so that tests can line up what goes into one batch.
#[derive(Default)]
struct TestFaults {
    disk_full: AtomicBool,
    /// Fail the n-th write from now (0: off).
    countdown: AtomicU64,
    paused: Mutex<bool>,
    resumed: Condvar,
    writer_waiting: AtomicBool,
}

impl TestFaults {
    fn pause(&self) {
        *self.paused.lock().unwrap() = true;
    }
    fn resume(&self) {
        *self.paused.lock().unwrap() = false;
        self.resumed.notify_all();
    }
    fn wait_until_writer_held(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.writer_waiting.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "writer never reached a write");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl FaultHook for TestFaults {
    fn before_write(&self) -> Result<(), sled::Error> {
        let mut paused = self.paused.lock().unwrap();
        while *paused {
            self.writer_waiting.store(true, Ordering::SeqCst);
            paused = self.resumed.wait(paused).unwrap();
        }
        drop(paused);
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(sled::Error::Io(std::io::Error::from_raw_os_error(28)));
        }
        let n = self.countdown.load(Ordering::SeqCst);
        if n > 0 && self.countdown.fetch_sub(1, Ordering::SeqCst) == 1 {
            return Err(sled::Error::Io(std::io::Error::other("injected write failure")));
        }
        Ok(())
    }
}

fn all_events(journal: &Journal) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let chunk = journal.read_from(out.len() as u64 + 1, 1000).unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
    }
}

/// Dense from 1, up to last_sequence, received_at non-decreasing.
fn assert_dense(journal: &Journal) -> Vec<StoredEvent> {
    let events = all_events(journal);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "sequence gap");
        if i > 0 {
            assert!(e.received_at_micros >= events[i - 1].received_at_micros);
        }
    }
    assert_eq!(events.len() as u64, journal.last_sequence());
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submitters_get_dense_sequences_in_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let mut watch = journal.watch();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            // All futures created before any is awaited: the order is fixed at submit time.
            let pending: Vec<_> =
                (0..100).map(|i| journal.submit(event("urn:p", &format!("{t}-{i}"), b"{}"))).collect();
            let mut got = Vec::new();
            for (i, fut) in pending.into_iter().enumerate() {
                let a = fut.await.unwrap();
                assert!(!a.duplicate);
                got.push((a.sequence, format!("{t}-{i}")));
            }
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "call order not kept");
            got
        }));
    }
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        for (seq, id) in task.await.unwrap() {
            assert!(by_seq.insert(seq, id).is_none(), "sequence handed out twice");
        }
    }
    assert_eq!(by_seq.keys().copied().collect::<Vec<_>>(), (1..=3200).collect::<Vec<_>>());
    assert_eq!(journal.last_sequence(), 3200);
    let events = assert_dense(&journal);
    for e in &events {
        assert_eq!(by_seq[&e.sequence], e.id);
    }
    watch.wait_for(|v| *v == 3200).await.unwrap();
    let stats = journal.stats();
    assert_eq!(stats.events, 3200);
    assert!(stats.batches <= 3200);
    journal.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_conflicts_also_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(TestFaults::default());
    let journal = Journal::open_with(&config(dir.path()), faults.clone()).unwrap();

    let a = event("urn:p", "a", br#"{"x":1}"#);
    let first = journal.submit(a.clone()).await.unwrap();
    assert_eq!((first.sequence, first.duplicate), (1, false));

    // A retry re-scored differently still gets the original's values.
    let mut retry = a.clone();
    retry.completeness = 0.1;
    retry.missing_expected = vec![];
    let dup = journal.submit(retry).await.unwrap();
    assert_eq!(dup, Appended { duplicate: true, ..first.clone() });

    let mut changed = a.clone();
    changed.data = br#"{"x":2}"#.to_vec();
    match journal.submit(changed.clone()).await {
        Err(Error::Conflict { publisher, id, sequence }) => {
            assert_eq!((publisher.as_str(), id.as_str(), sequence), ("urn:p", "a", 1))
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    let mut changed_time = a.clone();
    changed_time.time_micros = None;
    assert!(matches!(journal.submit(changed_time).await, Err(Error::Conflict { .. })));

    // Same id from another source is another event.
    let other = journal.submit(event("urn:q", "a", br#"{"x":1}"#)).await.unwrap();
    assert_eq!((other.sequence, other.duplicate), (2, false));

    // Within one batch: hold the writer so that all of these queue up together.
    faults.pause();
    let warmup = journal.submit(event("urn:p", "warmup", b"{}"));
    faults.wait_until_writer_held();
    let c = event("urn:p", "c", b"{}");
    let mut c_changed = c.clone();
    c_changed.subject = "other-case".into();
    let f1 = journal.submit(c.clone());
    let f2 = journal.submit(c.clone());
    let f3 = journal.submit(c_changed);
    faults.resume();
    assert_eq!(warmup.await.unwrap().sequence, 3);
    let (r1, r2, r3) = (f1.await.unwrap(), f2.await.unwrap(), f3.await);
    assert_eq!((r1.sequence, r1.duplicate), (4, false));
    assert_eq!((r2.sequence, r2.duplicate), (4, true));
    assert!(matches!(r3, Err(Error::Conflict { sequence: 4, .. })));
    assert_eq!(journal.last_sequence(), 4);

    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    let again = journal.submit(a.clone()).await.unwrap();
    assert_eq!(again, Appended { duplicate: true, ..first });
    assert!(matches!(journal.submit(changed).await, Err(Error::Conflict { sequence: 1, .. })));
    assert!(journal.submit(c).await.unwrap().duplicate);
    assert_eq!(journal.last_sequence(), 4);
    assert_dense(&journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_time_search() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.last_sequence(), 0);
    assert!(journal.read_from(0, 10).unwrap().is_empty());
    assert_eq!(journal.get(1).unwrap(), None);
    assert_eq!(journal.first_sequence_at_or_after(i64::MIN).unwrap(), 1);

    for i in 0..20 {
        journal.submit(event("urn:p", &format!("e{i}"), b"{}")).await.unwrap();
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let ids = |v: Vec<StoredEvent>| v.into_iter().map(|e| e.sequence).collect::<Vec<_>>();
    assert_eq!(ids(journal.read_from(0, 3).unwrap()), vec![1, 2, 3]);
    assert_eq!(ids(journal.read_from(18, 100).unwrap()), vec![18, 19, 20]);
    assert!(journal.read_from(21, 100).unwrap().is_empty());
    assert!(journal.read_from(5, 0).unwrap().is_empty());
    assert_eq!(journal.get(0).unwrap(), None);
    assert_eq!(journal.get(21).unwrap(), None);
    let e7 = journal.get(7).unwrap().unwrap();
    assert_eq!((e7.sequence, e7.id.as_str()), (7, "e6"));
    assert_eq!(e7.data, b"{}");
    assert_eq!(e7.missing_expected, vec!["address".to_string()]);

    let events = assert_dense(&journal);
    let linear = |micros: i64| events.iter().find(|e| e.received_at_micros >= micros).map_or(21, |e| e.sequence);
    for e in &events {
        for m in [e.received_at_micros - 1, e.received_at_micros, e.received_at_micros + 1] {
            assert_eq!(journal.first_sequence_at_or_after(m).unwrap(), linear(m), "at {m}");
        }
    }
    assert_eq!(journal.first_sequence_at_or_after(i64::MAX).unwrap(), 21);
    assert_eq!(journal.first_sequence_at_or_after(0).unwrap(), 1);
    assert!(journal.size_on_disk().unwrap() > 0);
}

#[test]
fn cursors_are_monotonic_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.cursor("p", "s").unwrap(), None);
    assert!(matches!(journal.ack("p", "s", 3), Err(Error::NotFound { .. })));
    assert_eq!(journal.create_cursor("p", "s", 5).unwrap(), 5);
    assert_eq!(journal.create_cursor("p", "s", 9).unwrap(), 5, "create keeps an existing cursor");
    assert_eq!(journal.ack("p", "s", 7).unwrap(), 7);
    assert_eq!(journal.ack("p", "s", 3).unwrap(), 7, "never backwards");
    assert_eq!(journal.cursor("p", "s").unwrap(), Some(7));
    // (partner, name) pairs that concatenate alike are still distinct.
    assert_eq!(journal.create_cursor("ab", "c", 1).unwrap(), 1);
    assert_eq!(journal.create_cursor("a", "bc", 2).unwrap(), 2);
    assert_eq!(journal.cursor("ab", "c").unwrap(), Some(1));

    // Concurrent acks: the cursor ends at the maximum.
    journal.create_cursor("p", "busy", 0).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let v = (i * 7919 + t * 104_729) % 1000;
                    let now = journal.ack("p", "busy", v).unwrap();
                    assert!(now >= v);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected = (0..4u64).flat_map(|t| (0..200u64).map(move |i| (i * 7919 + t * 104_729) % 1000)).max().unwrap();
    assert_eq!(journal.cursor("p", "busy").unwrap(), Some(expected));

    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.cursor("p", "s").unwrap(), Some(7));
    assert_eq!(journal.cursor("a", "bc").unwrap(), Some(2));
    assert_eq!(journal.cursor("p", "busy").unwrap(), Some(expected));
}

#[test]
fn cursor_acks_reach_disk_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    journal.create_cursor("p", "s", 1).unwrap();
    journal.ack("p", "s", 42).unwrap();
    // Within ~1 s sled's background flusher must have made it durable: check the bytes
    // on disk from a copy taken without closing the journal.
    std::thread::sleep(Duration::from_millis(1200));
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let snapshot = Journal::open(&config(copy.path())).unwrap();
    assert_eq!(snapshot.cursor("p", "s").unwrap(), Some(42));
    drop(journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let pending: Vec<_> = (0..500).map(|i| journal.submit(event("urn:p", &format!("{i}"), &[b'x'; 1000]))).collect();
    // close() drains what was submitted before it, even if nobody awaited yet.
    journal.close().unwrap();
    for (i, fut) in pending.into_iter().enumerate() {
        assert_eq!(fut.await.unwrap().sequence, i as u64 + 1);
    }
    assert!(matches!(journal.submit(event("urn:p", "late", b"{}")).await, Err(Error::Closed)));
    let before = assert_dense(&journal);
    drop(journal);

    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.last_sequence(), 500);
    assert_eq!(assert_dense(&journal), before);
    let next = journal.submit(event("urn:p", "next", b"{}")).await.unwrap();
    assert_eq!(next.sequence, 501);
    assert!(next.received_at_micros >= before[499].received_at_micros);

    // Dropping the last handle without close() also drains and flushes.
    let pending = journal.submit(event("urn:p", "dropped", b"{}"));
    drop(journal);
    assert_eq!(pending.await.unwrap().sequence, 502);
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.last_sequence(), 502);
}

/// A batch whose write fails midway (after some of its inserts) or whose flush fails:
/// every future of the batch gets Storage, nothing of it is readable or claimed by the id
/// index — not even after close and reopen — and later submits reuse the same sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_leaves_nothing_behind() {
    // Writes per batch here: [flushed mark,] one index claim per event, one insert per
    // chunk (these tiny events share one), flush. Batch 1 = warmup: claim, chunk, flush;
    // batch 2 = mark, 5 claims, chunk, flush.
    for (fail_at, what) in
        [(4u64, "third event's index claim"), (7, "chunk insert, after all index claims"), (8, "flush")]
    {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(TestFaults::default());
        let journal = Journal::open_with(&config(dir.path()), faults.clone()).unwrap();
        faults.pause();
        let warmup = journal.submit(event("urn:p", "warmup", b"{}"));
        faults.wait_until_writer_held();
        let batch: Vec<NewEvent> = (0..5).map(|i| event("urn:p", &format!("b{i}"), b"{}")).collect();
        let pending: Vec<_> = batch.iter().map(|e| journal.submit(e.clone())).collect();
        faults.countdown.store(3 + fail_at, Ordering::SeqCst);
        faults.resume();
        assert_eq!(warmup.await.unwrap().sequence, 1);
        for fut in pending {
            assert!(is_storage(&fut.await), "{what}: every future of the batch fails");
        }
        assert_eq!(journal.last_sequence(), 1, "{what}");
        assert_eq!(journal.get(2).unwrap(), None);
        assert_eq!(journal.read_from(1, 10).unwrap().len(), 1);

        // Nothing was left in sled either: close (which flushes) and reopen.
        journal.close().unwrap();
        drop(journal);
        let journal = Journal::open(&config(dir.path())).unwrap();
        assert_eq!(journal.last_sequence(), 1, "{what}: leftovers survived a reopen");
        {
            let store = journal.inner.shared.store().unwrap();
            assert!(store.events.get(seq_key(2)).unwrap().is_none(), "{what}");
            let mut key = Vec::new();
            for e in &batch {
                id_key_into(&mut key, &e.source, &e.id);
                assert!(store.ids.get(&key).unwrap().is_none(), "{what}: index kept {}", e.id);
            }
        }
        for (i, e) in batch.into_iter().enumerate() {
            let a = journal.submit(e).await.unwrap();
            assert_eq!((a.sequence, a.duplicate), (i as u64 + 2, false), "{what}");
        }
        assert_dense(&journal);
    }
}

/// Disk full: everything fails while it lasts (including the writer's own cleanup, which
/// makes it reopen sled), then the journal carries on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_recovers_when_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(TestFaults::default());
    let journal = Journal::open_with(&config(dir.path()), faults.clone()).unwrap();
    for i in 0..10 {
        journal.submit(event("urn:p", &format!("ok{i}"), b"{}")).await.unwrap();
    }
    journal.create_cursor("p", "s", 4).unwrap();

    faults.disk_full.store(true, Ordering::SeqCst);
    let pending: Vec<_> = (0..20).map(|i| journal.submit(event("urn:p", &format!("full{i}"), b"{}"))).collect();
    for fut in pending {
        assert!(is_storage(&fut.await));
    }
    assert!(is_storage(&journal.submit(event("urn:p", "full-again", b"{}")).await));
    assert_eq!(journal.last_sequence(), 10);
    assert!(journal.stats().reopens >= 1, "cleanup failure must lead to a reopen");
    assert_eq!(journal.read_from(1, 100).unwrap().len(), 10);

    faults.disk_full.store(false, Ordering::SeqCst);
    let a = journal.submit(event("urn:p", "full0", b"{}")).await.unwrap();
    assert_eq!((a.sequence, a.duplicate), (11, false));
    let b = journal.submit(event("urn:p", "after", b"{}")).await.unwrap();
    assert_eq!(b.sequence, 12);
    assert_eq!(journal.cursor("p", "s").unwrap(), Some(4));
    assert_dense(&journal);
    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.last_sequence(), 12);
    assert_dense(&journal);
}

/// The recovery step and the index verification, on states a crash could leave if sled
/// did not recover a clean prefix: an event above a gap, stale index entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_drops_tail_above_gap_and_ignores_stale_index() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    for i in 0..5 {
        journal.submit(event("urn:p", &format!("e{i}"), b"{}")).await.unwrap();
    }
    journal.close().unwrap();
    drop(journal);
    {
        let store =
            Store::open(&StoreConfig { dir: dir.path().to_path_buf(), cache_capacity_bytes: 16 << 20 }).unwrap();
        let mut key = Vec::new();
        // An event at 8 with nothing at 6 and 7, with its index entry.
        let ghost = StoredEvent::from_new(event("urn:p", "ghost", b"{}"), 8, 1);
        let chunk = prost::Message::encode_length_delimited_to_vec(&ghost);
        store.events.insert(seq_key(8), chunk).unwrap();
        id_key_into(&mut key, "urn:p", "ghost");
        store.ids.insert(&key, &seq_key(8)).unwrap();
        // Index entries whose events do not exist, or are other events.
        id_key_into(&mut key, "urn:p", "lost");
        store.ids.insert(&key, &seq_key(6)).unwrap();
        id_key_into(&mut key, "urn:p", "swapped");
        store.ids.insert(&key, &seq_key(3)).unwrap();
        // Pretend the flushed mark is older, so that recovery has to scan.
        store.meta.insert(FLUSHED_MARK, &seq_key(2)).unwrap();
        store.db.flush().unwrap();
    }
    let journal = Journal::open(&config(dir.path())).unwrap();
    assert_eq!(journal.last_sequence(), 5);
    assert_eq!(journal.get(8).unwrap(), None);
    for (id, expected) in [("ghost", 6), ("lost", 7), ("swapped", 8)] {
        let a = journal.submit(event("urn:p", id, b"{}")).await.unwrap();
        assert_eq!((a.sequence, a.duplicate), (expected, false), "{id}");
    }
    // The stale entries were replaced by real ones.
    assert!(journal.submit(event("urn:p", "lost", b"{}")).await.unwrap().duplicate);
    assert_dense(&journal);
}

/// Events of very different sizes in big batches: chunk boundaries (including events
/// larger than a chunk) must not show in reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_storage_reads_every_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let size = |i: usize| [10, 900, 3000, 20_000, 150][i % 5] + i;
    let pending: Vec<_> = (0..300)
        .map(|i| journal.submit(event("urn:p", &format!("m{i}"), &vec![b'a' + (i % 26) as u8; size(i)])))
        .collect();
    for (i, fut) in pending.into_iter().enumerate() {
        assert_eq!(fut.await.unwrap().sequence, i as u64 + 1);
    }
    let check = |journal: &Journal| {
        let events = assert_dense(journal);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.data.len(), size(i));
            assert_eq!(e.id, format!("m{i}"));
            assert_eq!(journal.get(i as u64 + 1).unwrap().as_ref(), Some(e));
        }
        for from in [1u64, 2, 3, 4, 5, 17, 150, 299, 300] {
            for max in [1usize, 2, 7, 1000] {
                let got = journal.read_from(from, max).unwrap();
                let want: Vec<_> = events[(from - 1) as usize..].iter().take(max).cloned().collect();
                assert_eq!(got, want, "read_from({from}, {max})");
            }
        }
    };
    check(&journal);
    assert!(journal.stats().batches < 300, "expected group commits");
    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    check(&journal);
    let a = journal.submit(event("urn:p", "m3", &vec![b'a' + 3; size(3)])).await.unwrap();
    assert_eq!((a.sequence, a.duplicate), (4, true));
}

/// A tmpfs mounted by the test (unmounted on drop), or the directory named by
/// LOKET_JOURNAL_SMALL_FS; `None` where neither is possible (mounting needs root).
struct SmallFs {
    dir: std::path::PathBuf,
    mounted: Option<tempfile::TempDir>,
}

impl SmallFs {
    fn get() -> Option<SmallFs> {
        if let Ok(dir) = std::env::var("LOKET_JOURNAL_SMALL_FS") {
            return Some(SmallFs { dir: dir.into(), mounted: None });
        }
        let parent = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
            .arg(parent.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallFs { dir: parent.path().to_owned(), mounted: Some(parent) })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted.is_some() {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The same on a real full disk: a 48 MiB tmpfs the test mounts (as root, as on the
/// project's machines and CI), or LOKET_JOURNAL_SMALL_FS; skipped with a message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_disk_full() {
    let Some(fs) = SmallFs::get() else {
        eprintln!("SKIPPED real_disk_full: cannot mount a tmpfs (needs root) and LOKET_JOURNAL_SMALL_FS is not set");
        return;
    };
    let base = fs.dir.clone();
    let dir = base.join("journal");
    let _ = std::fs::remove_dir_all(&dir);
    let ballast = base.join("ballast");
    // Leaves about 12 MiB for the journal.
    let free = free_space(&base);
    std::fs::write(&ballast, vec![0u8; free.saturating_sub(12 << 20) as usize]).unwrap();
    let journal = Journal::open(&config(&dir)).unwrap();
    let mut acked = Vec::new();
    let mut failed = 0;
    'fill: for round in 0.. {
        let pending: Vec<_> =
            (0..64).map(|i| journal.submit(event("urn:p", &format!("{round}-{i}"), &[b'z'; 4000]))).collect();
        for fut in pending {
            match fut.await {
                Ok(a) => acked.push(a.sequence),
                Err(Error::Storage(e)) => {
                    if failed == 0 {
                        eprintln!("after {} events: {e}", acked.len());
                    }
                    failed += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        if failed > 0 {
            break 'fill;
        }
        assert!(round < 100_000);
    }
    let last = journal.last_sequence();
    assert_eq!(acked.len() as u64, last);
    assert!(is_storage(&journal.submit(event("urn:p", "still-full", b"{}")).await));
    assert_eq!(journal.get(last + 1).unwrap(), None);

    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        match journal.submit(event("urn:p", "space-back", b"{}")).await {
            Ok(a) => break a,
            Err(e) => {
                assert!(Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!((a.sequence, a.duplicate), (last + 1, false));
    eprintln!("recovered with {} reopens", journal.stats().reopens);
    journal.close().unwrap();
    drop(journal);
    let journal = Journal::open(&config(&dir)).unwrap();
    assert_eq!(journal.last_sequence(), last + 1);
    assert_dense(&journal);
    journal.close().unwrap();
    drop(journal);
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_space(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse().unwrap()
}

const CRASH_DIR: &str = "LOKET_JOURNAL_CRASH_DIR";
const CRASH_CYCLE: &str = "LOKET_JOURNAL_CRASH_CYCLE";
const CRASH_TASKS: usize = 16;
const CRASH_WINDOW: usize = 4;

fn crash_event(cycle: u32, task: usize, i: usize) -> NewEvent {
    let id = format!("c{cycle}-t{task}-{i}");
    let mut data = format!(r#"{{"id":"{id}","pad":""#).into_bytes();
    data.resize(1000, b'x');
    data.extend_from_slice(b"\"}");
    event("urn:crash", &id, &data)
}

/// Child side of `kill9_never_loses_an_acked_event`; does nothing unless re-executed by it.
#[test]
#[ignore = "run only as the child process of kill9_never_loses_an_acked_event"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let cycle: u32 = std::env::var(CRASH_CYCLE).unwrap().parse().unwrap();
    let journal = Journal::open(&config(Path::new(&dir))).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async move {
        let tasks: Vec<_> = (0..CRASH_TASKS)
            .map(|t| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let mut window = std::collections::VecDeque::new();
                    for i in 0.. {
                        if i % 7 == 0 {
                            // Rejections share the batches and the chain: recovery must keep
                            // the chain whole wherever the kill lands.
                            drop(journal.reject(rejection("urn:crash", &format!("c{cycle}-t{t}-{i}-bad"))));
                        }
                        window.push_back((i, journal.submit(crash_event(cycle, t, i))));
                        if window.len() == CRASH_WINDOW {
                            let (i, fut) = window.pop_front().unwrap();
                            let a: Appended = fut.await.unwrap();
                            // One write of a short line: atomic on a pipe, so the parent
                            // never sees half an ack.
                            let line = format!("ACK {} {t} {i} END\n", a.sequence);
                            std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_never_loses_an_acked_event() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for cycle in 0..5u32 {
        let mut child = Command::new(&exe)
            .args(["--exact", "tests::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR, dir.path())
            .env(CRASH_CYCLE, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split(' ').collect();
                if parts.len() == 5 && parts[0] == "ACK" && parts[4] == "END" {
                    let parse = |s: &str| s.parse::<u64>().unwrap();
                    let _ = tx.send((parse(parts[1]), parse(parts[2]) as usize, parse(parts[3]) as usize));
                }
            }
        });
        // Kill at a different point each cycle, while acks are flowing.
        let target = 150 + 97 * cycle as usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut acked = Vec::new();
        while acked.len() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(ack) => acked.push(ack),
                Err(_) => {
                    let _ = child.kill();
                    panic!("child produced only {} acks", acked.len());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(3 * cycle as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());

        let journal = Journal::open(&config(dir.path())).unwrap();
        let events = assert_dense(&journal);
        let last = journal.last_sequence();
        let mut highest: HashMap<usize, usize> = HashMap::new();
        for &(seq, t, i) in &acked {
            let stored = events.get((seq - 1) as usize);
            assert_eq!(
                stored.map(|e| e.id.as_str()),
                Some(format!("c{cycle}-t{t}-{i}").as_str()),
                "cycle {cycle}: acked event {seq} lost or changed (last {last})"
            );
            let h = highest.entry(t).or_default();
            *h = (*h).max(i);
        }
        // Retry everything the child may have submitted: acked events and events stored
        // but unacked are duplicates of what is stored; nothing else may claim to be.
        let acked_seq: HashMap<(usize, usize), u64> = acked.iter().map(|&(seq, t, i)| ((t, i), seq)).collect();
        let mut retries = Vec::new();
        for t in 0..CRASH_TASKS {
            let upto = highest.get(&t).map_or(0, |h| h + CRASH_WINDOW + 1);
            for i in 0..=upto {
                retries.push(((t, i), journal.submit(crash_event(cycle, t, i))));
            }
        }
        for ((t, i), fut) in retries {
            let a = fut.await.unwrap();
            if let Some(&seq) = acked_seq.get(&(t, i)) {
                assert!(a.duplicate && a.sequence == seq, "acked event not recognised");
            }
            if a.duplicate {
                assert!(a.sequence <= last);
                assert_eq!(events[(a.sequence - 1) as usize].id, format!("c{cycle}-t{t}-{i}"));
            } else {
                assert!(a.sequence > last);
            }
        }
        assert_dense(&journal);
        journal.close().unwrap();
        drop(journal);
        // Recovery after kill -9 leaves an intact hash chain.
        let report = audit::verify_dir(dir.path()).unwrap();
        assert_eq!(report.problem, None, "cycle {cycle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_by_publisher_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let a = journal.submit(event("dtv", "a", b"{}")).await.unwrap();
    journal.submit(event("kmar", "a", b"{}")).await.unwrap();
    let found = journal.find("dtv", "a").unwrap().unwrap();
    assert_eq!((found.sequence, found.source.as_str()), (a.sequence, "dtv"));
    assert!(journal.find("dtv", "b").unwrap().is_none());
    assert!(journal.find("dji", "a").unwrap().is_none());
    journal.close().unwrap();
}
fn rejection(source: &str, id: &str) -> NewRejection {
    NewRejection {
        source: source.into(),
        caller: source.into(),
        id: id.into(),
        event_type: "baggage".into(),
        data: b"{\"pieces\":\"two\"}".to_vec(),
        reason: "SCHEMA_VIOLATION".into(),
        message: "event does not match".into(),
        violations: vec![Violation { field: "/pieces".into(), description: "must be an integer".into() }],
        ..NewRejection::default()
    }
}

/// Accepted, rejected and conflicting entries in one chain, across a reopen.
#[tokio::test]
async fn rejections_are_chained_with_accepted_events_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(&config(dir.path())).unwrap();
        journal.submit(event("coa", "a", b"{}")).await.unwrap();
        assert_eq!(journal.reject(rejection("coa", "bad-1")).await.unwrap(), 1);
        journal.submit(event("coa", "b", b"{}")).await.unwrap();
        // A conflict is journaled by the writer itself.
        assert!(matches!(journal.submit(event("coa", "a", b"{\"x\":1}")).await, Err(Error::Conflict { .. })));
        assert_eq!(journal.last_rejection(), 2);
        assert_eq!(journal.last_sequence(), 2);
        journal.close().unwrap();
    }
    let journal = Journal::open(&config(dir.path())).unwrap();
    let rejections = journal.read_rejections_from(1, 10).unwrap();
    assert_eq!(rejections.iter().map(|r| r.chain).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(rejections[1].reason, "ID_CONFLICT");
    let events = all_events(&journal);
    assert_eq!(events.iter().map(|e| e.chain).collect::<Vec<_>>(), vec![1, 3]);
    // The chain continues after the reopen.
    journal.submit(event("coa", "c", b"{}")).await.unwrap();
    assert_eq!(journal.get(3).unwrap().unwrap().chain, 5);
    assert_eq!(journal.get(3).unwrap().unwrap().prev_hash, rejections[1].hash);
    journal.close().unwrap();
    drop(journal);
    let report = audit::verify_dir(dir.path()).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!((report.walk.entries, report.walk.accepted, report.walk.rejected), (5, 3, 2));
}

/// Rewrites the events tree of a closed journal: `edit` gets every stored record in order.
fn tamper(dir: &Path, edit: impl FnOnce(&mut Vec<StoredEvent>)) {
    let store = Store::open(&StoreConfig { dir: dir.to_owned(), cache_capacity_bytes: 16 << 20 }).unwrap();
    let mut records = Vec::new();
    for item in store.events.iter() {
        let (_, chunk) = item.unwrap();
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            records.push(<StoredEvent as prost::Message>::decode_length_delimited(&mut rest).unwrap());
        }
    }
    store.events.clear().unwrap();
    edit(&mut records);
    let mut buf = Vec::new();
    for r in &records {
        prost::Message::encode_length_delimited(r, &mut buf).unwrap();
    }
    store.events.insert(seq_key(1), buf).unwrap();
    store.db.flush().unwrap();
}

async fn journal_of(dir: &Path, n: usize) {
    let journal = Journal::open(&config(dir)).unwrap();
    for i in 0..n {
        journal.submit(event("dji", &format!("e{i}"), format!("{{\"i\":{i}}}").as_bytes())).await.unwrap();
        if i == 2 {
            journal.reject(rejection("dji", "r")).await.unwrap();
        }
    }
    journal.close().unwrap();
}

#[tokio::test]
async fn audit_names_the_altered_removed_or_reordered_entry() {
    // Altered: one byte of one payload.
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), 6).await;
    tamper(dir.path(), |records| records[3].data[5] ^= 1);
    let problem = audit::verify_dir(dir.path()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, audit::ProblemKind::Altered);
    assert_eq!(problem.entry, Some(audit::EntryRef::Accepted(4)));
    assert!(problem.detail.contains("accepted event sequence 4"), "{}", problem.detail);

    // Removed: the fifth event.
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), 6).await;
    tamper(dir.path(), |records| {
        records.remove(4);
    });
    let problem = audit::verify_dir(dir.path()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, audit::ProblemKind::Removed);
    assert_eq!(problem.position, 7, "{problem:?}");
    assert!(problem.detail.contains("chain position 6 is missing"), "{}", problem.detail);

    // Reordered: two events swapped.
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), 6).await;
    tamper(dir.path(), |records| records.swap(0, 1));
    let problem = audit::verify_dir(dir.path()).unwrap().problem.unwrap();
    assert_eq!(problem.entry, Some(audit::EntryRef::Accepted(2)));
    assert_eq!(problem.kind, audit::ProblemKind::Removed);

    // A rejection rewritten with a fresh, self-consistent hash: the next entry's link breaks.
    let dir = tempfile::tempdir().unwrap();
    journal_of(dir.path(), 6).await;
    {
        let store = Store::open(&StoreConfig { dir: dir.path().to_owned(), cache_capacity_bytes: 16 << 20 }).unwrap();
        let value = store.rejections.get(seq_key(1)).unwrap().unwrap();
        let sealed = <StoredRejection as prost::Message>::decode(&value[..]).unwrap();
        // The hash covers the plain record, the payload stays sealed as it was.
        let keys = crate::keys::KeyStore::open(dir.path()).unwrap();
        let mut r = keys.open_rejection(sealed.clone()).unwrap();
        r.reason = "NOTHING_TO_SEE".into();
        r.hash = chain::rejection_hash(&StoredRejection { hash: Vec::new(), ..r.clone() }).to_vec();
        let forged = StoredRejection { data: sealed.data, key: sealed.key, ..r };
        store.rejections.insert(seq_key(1), prost::Message::encode_to_vec(&forged)).unwrap();
        store.db.flush().unwrap();
    }
    let problem = audit::verify_dir(dir.path()).unwrap().problem.unwrap();
    assert_eq!(problem.kind, audit::ProblemKind::Altered);
    assert_eq!(problem.entry, Some(audit::EntryRef::Accepted(4)));
}
