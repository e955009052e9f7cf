//! The publish arms against a server process: `transport-unary` and `transport-stream`
//! against the null gateway, `gateway-unary`, `gateway-stream` and `gateway-at-N/s`
//! against a gateway. The same load on both, so their ratio is the cost of our work.

use std::path::Path;
use std::sync::Arc;

use crate::corpus::{self, Item};
use crate::load::{self, Clients};
use crate::plan::{Plan, Selection};
use crate::procs::ServerProcess;
use crate::stats::ArmResult;

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
    if selection.runs(&arm) {
        let cpu0 = server.cpu()?;
        let run = load::unary_closed(&clients, items, plan.concurrency, plan.events).await?;
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{} concurrent callers", plan.concurrency)),
        );
    }

    let arm = format!("{name}-stream");
    if selection.runs(&arm) {
        let cpu0 = server.cpu()?;
        let run = streams_after_unary(&clients, items, plan.events).await?;
        let streams = corpus::sources(items).len();
        out.push(
            ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                .latency(&run.latency)
                .cpu(server.cpu()? - cpu0)
                .note(format!("{streams} streams, one per partner")),
        );
    }

    if fixed_rates {
        for (k, &rate) in plan.rates.iter().enumerate() {
            let arm = format!("{name}-at-{rate}/s");
            if !selection.runs(&arm) {
                continue;
            }
            let cpu0 = server.cpu()?;
            // Distinct id rounds per run, so that no run's events are duplicates of another's.
            let base = 1_000_000 * (k as u64 + 1);
            let run = load::open_loop(&clients, items, rate, plan.latency_run, base).await?;
            out.push(
                ArmResult::new(&arm, run.done, run.rejected, run.elapsed)
                    .latency(&run.latency)
                    .cpu(server.cpu()? - cpu0)
                    .note(match &run.first_failure {
                        None => format!("open loop, offered {rate}/s"),
                        Some(first) => {
                            format!("open loop, offered {rate}/s; {} got no answer (first: {first})", run.failed)
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
