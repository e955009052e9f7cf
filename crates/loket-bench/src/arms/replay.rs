//! `replay` and `memory`: a gateway that stores many events, one subscriber reading them
//! all back from the start, and the gateway's memory and journal size after both. Then,
//! on the same journal, `recovery` and `journal-read` (`super::recovery`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loket_schema::Registry;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{subscribe_request::Start, Earliest, SubscribeRequest};
use serde_json::Value;

use super::recovery::{journal_read_arm, recovery_arm};
use crate::corpus::Item;
use crate::load::{self, Clients};
use crate::plan::Selection;
use crate::procs::{disk_usage, ServerProcess};
use crate::stats::ArmResult;

/// The partner that reads the log back in the replay arm, and the types it receives whole
/// under the shipped need-to-know policy (so the arm measures reading, not redaction).
pub const READER: &str = "dtv";
const READER_TYPES: &[&str] = &["physical-features", "baggage", "transport-status"];

/// Stores `events` events through publish streams, then reads them all back through one
/// subscriber, and reports the gateway's memory and the journal's size on disk; then kills
/// the gateway for the recovery and journal-read arms, when `selection` runs them.
pub async fn replay_and_memory(
    work: &Path,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    events: u64,
    selection: &Selection,
) -> anyhow::Result<Vec<ArmResult>> {
    let valid: Vec<Item> = {
        let registry = Registry::embedded()?;
        items
            .iter()
            .filter(|i| {
                // The recorded outcome also covers quality rules and grants; a log without
                // outcomes is judged by its schemas.
                i.recorded_accepted.unwrap_or_else(|| {
                    registry.resolve(&i.event.r#type, Some(&i.event.dataschema)).is_ok_and(|s| {
                        serde_json::from_slice::<Value>(&i.event.data).is_ok_and(|d| s.check(&d).is_ok())
                    })
                })
            })
            .cloned()
            .collect()
    };
    anyhow::ensure!(!valid.is_empty(), "the corpus holds no valid event");
    let valid = Arc::new(valid);
    // Filled as fast as it goes: a partner with a large share of the corpus passes the
    // production quota of 5,000 events/s on a quiet machine, and a refused event would be
    // missing from the replay.
    let server = ServerProcess::gateway(work, "replay", certs_dir, "[limits]\nevents_per_second = 0\n")?;
    let clients = Clients::connect(&server.url(), certs_dir, &valid).await?;
    let fill = load::streams(&clients, &valid, events).await?;
    anyhow::ensure!(fill.rejected == 0, "valid events were refused while filling");
    drop(clients);
    // The followers (access index, handover figures, processing log) are still working
    // through the fill when it ends; the replay starts once the gateway is idle, so that
    // its CPU per event is the replay's own (target: replay against journal-read).
    let settled = server.settle().await?;

    let options = ClientOptions { server: server.url(), certs: certs_dir.to_owned(), partner: READER.to_owned() };
    let mut reader = connect(&options).await?.max_decoding_message_size(64 * 1024 * 1024);
    // The replay's peak is its own, not the fill's (target: resident memory during replay).
    let (_, fill_peak) = server.memory()?;
    server.reset_peak()?;
    let cpu0 = server.cpu()?;
    let start = Instant::now();
    let expected = (0..events)
        .filter(|i| READER_TYPES.contains(&valid[(i % valid.len() as u64) as usize].event.r#type.as_str()))
        .count() as u64;
    anyhow::ensure!(expected > 0, "the corpus holds none of {READER_TYPES:?}");
    let request = SubscribeRequest {
        types: READER_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        start: Some(Start::Earliest(Earliest {})),
        name: String::new(),
        limit: expected,
    };
    let mut stream = reader.subscribe(request).await?.into_inner();
    let mut received = 0u64;
    while stream.message().await?.is_some() {
        received += 1;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(received == expected, "replay delivered {received} of {expected} events");
    let cpu = server.cpu()? - cpu0;
    let (rss, peak) = server.memory()?;
    let disk = disk_usage(&work.join("replay"));
    server.kill()?;
    let mut results = vec![
        ArmResult::new("replay", received, 0, elapsed).cpu(cpu).rss(Some(peak)).note(format!(
            "{READER} from earliest: {expected} of {events} stored events are its types; filled at {:.0}/s; {}; peak RSS during the replay (the fill's: {} MiB)",
            fill.done as f64 / fill.elapsed.as_secs_f64(),
            crate::procs::settled_note(settled, "the fill"),
            fill_peak / 1048576
        )),
        ArmResult::new("memory", events, 0, Duration::ZERO).rss(Some(rss)).note(format!(
            "gateway RSS after storing and replaying; journal {:.0} MiB on disk",
            disk as f64 / 1048576.0
        )),
    ];
    if selection.runs("recovery") {
        results.push(recovery_arm(work, "replay", certs_dir, &valid[0], events).await?);
    }
    if selection.runs("journal-read") {
        let dir = loket_server::Config { data_dir: work.join("replay"), ..Default::default() }.journal_dir();
        results.push(journal_read_arm(&dir, READER_TYPES, expected)?);
    }
    Ok(results)
}
