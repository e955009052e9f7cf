//! `soak`: publishes at a fixed rate for a long while against a gateway with a short
//! retention (every period but the quality figures' days, and the dedup window, set to
//! `--soak-retention`), and samples
//! the data directory's bytes on disk and the gateway's resident memory at intervals.
//! With retention working both level off once the first events expire; without it they
//! grow with the run.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::corpus::Item;
use crate::load::{self, Clients};
use crate::plan::Plan;
use crate::procs::{disk_usage, ServerProcess};
use crate::stats::ArmResult;

mod stores;

/// Samples taken over the run.
const SAMPLES: u32 = 12;

pub async fn soak_arm(work: &Path, certs_dir: &Path, items: &Arc<Vec<Item>>, plan: &Plan) -> anyhow::Result<ArmResult> {
    let period = &plan.soak_retention;
    // Compaction a few times per period, so that little more than one period is kept.
    let config = format!(
        "[journal]\ndedup_window = {period:?}\n[retention]\ndefault = {period:?}\nrejections = {period:?}\n\
         denials = {period:?}\nprocessing = {period:?}\ncompact_every = \"{}ms\"\n",
        (humantime::parse_duration(period)?.as_millis() / 4).max(500)
    );
    let server = ServerProcess::gateway(work, "soak", certs_dir, &config)?;
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    let data_dir = work.join("soak");
    let step = plan.soak_run / SAMPLES;
    let started = Instant::now();
    let (mut done, mut rejected) = (0, 0);
    let mut samples = Vec::new();
    for i in 0..SAMPLES {
        // Distinct id rounds per step: every event is new.
        let run = load::open_loop(&clients, items, plan.soak_rate, step, 10_000_000 * (u64::from(i) + 1)).await?;
        done += run.done;
        rejected += run.rejected;
        let disk = disk_usage(&data_dir) as f64 / (1024.0 * 1024.0);
        let rss = server.memory()?.0 as f64 / (1024.0 * 1024.0);
        let at = started.elapsed().as_secs();
        let by_store: Vec<String> = stores::per_store(&data_dir)
            .into_iter()
            .map(|(store, bytes)| format!("{store} {:.1}", bytes as f64 / (1024.0 * 1024.0)))
            .collect();
        eprintln!(
            "soak: {at:>5} s  {done:>9} events  disk {disk:>8.1} MiB  rss {rss:>7.1} MiB  ({})",
            by_store.join(", ")
        );
        samples.push(format!("{at}s {disk:.0}/{rss:.0}"));
    }
    let (_, peak) = server.memory()?;
    server.stop()?;
    for t in stores::per_tree(&data_dir)? {
        eprintln!(
            "soak tree: {:<10} {:<24} {:>9} entries {:>10.1} KiB",
            t.store,
            t.tree,
            t.entries,
            t.bytes as f64 / 1024.0
        );
    }
    let mut result = ArmResult::new("soak", done, rejected, started.elapsed()).note(format!(
        "{}/s, retention {period}; disk/RSS MiB: {}",
        plan.soak_rate,
        samples.join(", ")
    ));
    result.peak_rss_mib = Some(peak as f64 / (1024.0 * 1024.0));
    Ok(result)
}
