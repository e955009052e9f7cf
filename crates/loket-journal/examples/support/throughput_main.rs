// Shared body of the `throughput` and `throughput_mimalloc` examples.
use std::collections::VecDeque;
use std::time::Instant;

use loket_journal::{Journal, JournalConfig, NewEvent};

fn arg(n: usize, default: usize) -> usize {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user, system) used so far by the journal's writer thread.
fn writer_cpu() -> (f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "loket-journal-w" {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after.split_whitespace().collect();
            let get = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            return (get(11) / tick, get(12) / tick);
        }
    }
    (0.0, 0.0)
}

fn main() {
    let (events, tasks, window, max_batch) = (arg(1, 200_000), arg(2, 64), arg(3, 1), arg(4, 1024));
    let dir = tempfile::tempdir_in(std::env::var("JOURNAL_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    let journal = Journal::open(&JournalConfig {
        dir: dir.path().to_path_buf(),
        cache_capacity_bytes: 64 << 20,
        max_batch,
        ..JournalConfig::default()
    })
    .expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let per_task = events / tasks;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let mut in_flight = VecDeque::with_capacity(window);
                    for i in 0..per_task {
                        let mut data = format!(r#"{{"task":{t},"i":{i},"pad":""#).into_bytes();
                        data.resize(1000, b'x');
                        data.extend_from_slice(b"\"}");
                        in_flight.push_back(journal.submit(NewEvent {
                            source: format!("urn:partner:{}", t % 8),
                            id: format!("{t:04}-{i:08}"),
                            event_type: "nl.example.case.updated".into(),
                            schema_version: 1,
                            dataschema: "urn:schema:case-updated:1".into(),
                            subject: format!("case-{}", i % 1000),
                            time_micros: Some(1_700_000_000_000_000),
                            datacontenttype: "application/json".into(),
                            data,
                            completeness: 1.0,
                            missing_expected: vec![],
                            ..NewEvent::default()
                        }));
                        if in_flight.len() >= window {
                            in_flight.pop_front().unwrap().await.expect("submit");
                        }
                    }
                    for f in in_flight {
                        f.await.expect("submit");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    let elapsed = start.elapsed();
    let (user, sys) = writer_cpu();
    let stats = journal.stats();
    println!(
        "{} events, {tasks} tasks x window {window}, max_batch {max_batch}: {:.2} s, {:.0} events/s, \
         {} batches (avg {:.1} events), {:.1} MiB on disk, RSS {} MiB",
        stats.events,
        elapsed.as_secs_f64(),
        stats.events as f64 / elapsed.as_secs_f64(),
        stats.batches,
        stats.events as f64 / stats.batches.max(1) as f64,
        journal.size_on_disk().unwrap() as f64 / (1 << 20) as f64,
        rss_kib() / 1024,
    );
    println!(
        "writer thread CPU: {user:.2} s user + {sys:.2} s sys = {:.1} µs/event",
        (user + sys) * 1e6 / stats.events.max(1) as f64
    );
    let replay = Instant::now();
    let mut next = 1;
    loop {
        let chunk = journal.read_from(next, 1000).unwrap();
        if chunk.is_empty() {
            break;
        }
        next += chunk.len() as u64;
    }
    println!(
        "replay: {} events in {:.2} s, {:.0} events/s",
        next - 1,
        replay.elapsed().as_secs_f64(),
        (next - 1) as f64 / replay.elapsed().as_secs_f64()
    );
    journal.close().unwrap();
}
