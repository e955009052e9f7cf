//! `validate`: validation and completeness alone, in this process.

use std::time::Instant;

use loket_schema::Registry;
use serde_json::Value;

use crate::corpus::Item;
use crate::procs::{own_cpu, own_peak_rss};
use crate::stats::{histogram, record, ArmResult};

/// Validation and completeness alone, in this process, one core: the CPU floor of our work.
pub fn validate_arm(items: &[Item], events: u64) -> anyhow::Result<ArmResult> {
    let registry = Registry::embedded()?;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    let mut h = histogram();
    let mut rejected = 0;
    for i in 0..events {
        let item = &items[(i % items.len() as u64) as usize];
        let t0 = Instant::now();
        let ok = registry
            .resolve(&item.event.r#type, Some(&item.event.dataschema))
            .ok()
            .and_then(|schema| {
                let data: Value = serde_json::from_slice(&item.event.data).ok()?;
                schema.check(&data).ok()?;
                serde_json::to_vec(&data).ok()
            })
            .is_some();
        record(&mut h, t0.elapsed());
        if !ok {
            rejected += 1;
        }
    }
    let elapsed = start.elapsed();
    Ok(ArmResult::new("validate", events, rejected, elapsed)
        .latency(&h)
        .cpu(own_cpu()? - cpu0)
        .rss(own_peak_rss())
        .note("in-process, 1 thread"))
}
