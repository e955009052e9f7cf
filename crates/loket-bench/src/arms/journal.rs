//! `journal`: the journal alone, in this process, fed the corpus's valid events as the
//! gateway would store them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use loket_journal::{Journal, JournalConfig, NewEvent};
use loket_schema::Registry;
use serde_json::Value;

use crate::corpus::Item;
use crate::procs::{own_cpu, own_peak_rss};
use crate::stats::{histogram, record, ArmResult};

/// Journal entries for the valid corpus events, as the gateway would store them.
fn journal_entries(items: &[Item]) -> anyhow::Result<Vec<NewEvent>> {
    let registry = Registry::embedded()?;
    let mut out = Vec::new();
    for item in items {
        let Ok(schema) = registry.resolve(&item.event.r#type, Some(&item.event.dataschema)) else { continue };
        let Ok(data) = serde_json::from_slice::<Value>(&item.event.data) else { continue };
        let Ok(completeness) = schema.check(&data) else { continue };
        out.push(NewEvent {
            source: item.source.clone(),
            id: item.event.id.clone(),
            event_type: item.event.r#type.clone(),
            schema_version: schema.version(),
            dataschema: schema.id().to_owned(),
            subject: data.get("vNumber").and_then(Value::as_str).unwrap_or_default().to_owned(),
            time_micros: None,
            datacontenttype: "application/json".to_owned(),
            data: serde_json::to_vec(&data)?,
            completeness: completeness.score,
            missing_expected: completeness.missing,
            ..NewEvent::default()
        });
    }
    anyhow::ensure!(!out.is_empty(), "the corpus holds no valid event");
    Ok(out)
}

/// Journal appends alone with the gateway's group-commit policy: many concurrent
/// submitters, one writer, one flush per batch.
pub async fn journal_arm(items: &[Item], events: u64, work: &Path) -> anyhow::Result<ArmResult> {
    let entries = Arc::new(journal_entries(items)?);
    let defaults = loket_server::Config::default();
    let journal = Journal::open(&JournalConfig { dir: work.join("journal-arm"), ..defaults.journal_config() })?;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    let submitters = 256u64;
    let mut tasks = FuturesUnordered::new();
    for t in 0..submitters {
        let journal = journal.clone();
        let entries = entries.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut i = t;
            while i < events {
                let mut e = entries[(i % entries.len() as u64) as usize].clone();
                e.id = format!("{}~{i}", e.id);
                let t0 = Instant::now();
                journal.submit(e).await?;
                record(&mut h, t0.elapsed());
                i += submitters;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let mut h = histogram();
    while let Some(done) = tasks.next().await {
        h.add(&done??)?;
    }
    let elapsed = start.elapsed();
    let cpu = own_cpu()? - cpu0;
    journal.close()?;
    Ok(ArmResult::new("journal", events, 0, elapsed)
        .latency(&h)
        .cpu(cpu)
        .rss(own_peak_rss())
        .note(format!("in-process, {submitters} submitters, {} per flush", journal_batch_note(&journal))))
}

fn journal_batch_note(journal: &Journal) -> String {
    let s = journal.stats();
    if s.batches == 0 {
        return "-".to_owned();
    }
    format!("{:.0} events", s.events as f64 / s.batches as f64)
}
