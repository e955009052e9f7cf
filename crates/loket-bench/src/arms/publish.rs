//! The publish arms against a server process: `transport-unary` and `transport-stream`
//! against the null gateway, `gateway-unary`, `gateway-stream`, `gateway-at-N/s` and
//! `gateway-at-70%` (70 % of this run's gateway-unary rate) against a gateway. The same
//! load on both, so their ratio is the cost of our work.
//!
//! Each arm starts with the server idle and counts the CPU until it is idle again after
//! the last reply (the null gateway is idle at once): what the gateway's followers do
//! for an arm's events after acknowledging them is part of its cost per event, and must
//! not land in the next arm's.

use std::path::Path;
use std::sync::Arc;

use crate::corpus::{self, Item};
use crate::load::{self, Clients};
use crate::plan::{Plan, Selection};
use crate::procs::{settled_note, ServerProcess};
use crate::stats::ArmResult;

/// The fixed-rate arm at 70 % of the saturation this run measured (gateway-unary).
pub const SATURATION_ARM: &str = "gateway-at-70%";

/// Unary with concurrent callers, publish streams, and (for the gateway) unary latency at
/// fixed offered loads: those of them that `selection` wants.
pub async fn publish_arms(
    name: &str,
    server: &ServerProcess,
    certs_dir: &Path,
    items: &Arc<Vec<Item>>,
    plan: &Plan,
    selection: &Selection,
    fixed_rates: bool,
) -> anyhow::Result<Vec<ArmResult>> {
    let clients = Clients::connect(&server.url(), certs_dir, items).await?;
    let mut out = Vec::new();

    let arm = format!("{name}-unary");
    // The 70 % arm offers a share of what this arm measures, so it runs for that too.
    let saturation_arm = fixed_rates && selection.runs(SATURATION_ARM);
    let mut saturation = None;
    if selection.runs(&arm) || saturation_arm {
        server.settle().await?;
        let cpu0 = server.cpu()?;
        let run = load::unary_closed(&clients, items, plan.concurrency, plan.events).await?;
        saturation = Some(run.done as f64 / run.elapsed.as_secs_f64());
        let settled = server.settle().await?;
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{} concurrent callers; {}", plan.concurrency, settled_note(settled, "the last reply"))),
        );
    }

    let arm = format!("{name}-stream");
    if selection.runs(&arm) {
        server.settle().await?;
        let cpu0 = server.cpu()?;
        let run = streams_after_unary(&clients, items, plan.events).await?;
        let streams = corpus::sources(items).len();
        let settled = server.settle().await?;
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{streams} streams, one per partner; {}", settled_note(settled, "the last reply"))),
        );
    }

    if fixed_rates {
        let mut runs: Vec<(String, u64)> = plan
            .rates
            .iter()
            .map(|&rate| (format!("{name}-at-{rate}/s"), rate))
            .filter(|(arm, _)| selection.runs(arm))
            .collect();
        if let (true, Some(saturation)) = (saturation_arm, saturation) {
            runs.push((SATURATION_ARM.to_owned(), ((saturation * 0.7) as u64).max(1)));
        }
        for (k, (arm, rate)) in runs.into_iter().enumerate() {
            server.settle().await?;
            let cpu0 = server.cpu()?;
            // Distinct id rounds per run, so that no run's events are duplicates of another's.
            let base = 1_000_000 * (k as u64 + 1);
            let run = load::open_loop(&clients, items, rate, plan.latency_run, base).await?;
            let settled = settled_note(server.settle().await?, "the last reply");
            out.push(
                ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                    .latency(&run.latency)
                    .cpu(server.cpu()? - cpu0)
                    .note(match &run.first_failure {
                        None => format!("open loop, offered {rate}/s; {settled}"),
                        Some(first) => {
                            format!(
                                "open loop, offered {rate}/s; {} got no answer (first: {first}); {settled}",
                                run.failed
                            )
                        }
                    }),
            );
        }
    }
    let (_, peak) = server.memory()?;
    for r in &mut out {
        r.peak_rss_mib = Some(peak as f64 / (1024.0 * 1024.0));
    }
    Ok(out)
}

/// The stream run sends ids of a later round than the unary run, so it stores new events.
async fn streams_after_unary(
    clients: &Clients,
    items: &Arc<Vec<Item>>,
    events: u64,
) -> anyhow::Result<load::RunOutcome> {
    let shifted: Vec<Item> = items
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.event.id = format!("{}~s", i.event.id);
            i
        })
        .collect();
    load::streams(clients, &Arc::new(shifted), events).await
}
