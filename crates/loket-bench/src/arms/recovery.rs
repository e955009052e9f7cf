//! `recovery` and `journal-read`, on the journal the replay arm filled: the gateway killed
//! with SIGKILL and started again on it (time until a publish is acknowledged), then the
//! same events read straight from the journal in this process (the floor for replay).

use std::path::Path;
use std::time::Instant;

use loket_journal::{Journal, JournalConfig};
use loket_server::client::{connect, ClientOptions};

use crate::corpus::Item;
use crate::procs::{own_cpu, ServerProcess};
use crate::stats::ArmResult;

/// Events per journal read, as a subscription reads them.
const READ_CHUNK: usize = 1024;

/// Starts the gateway again on the data of `name` after it was killed, and times from
/// the start of the process to the first acknowledged publish of `probe`.
pub async fn recovery_arm(
    work: &Path,
    name: &str,
    certs_dir: &Path,
    probe: &Item,
    stored: u64,
) -> anyhow::Result<ArmResult> {
    let start = Instant::now();
    let server = ServerProcess::gateway(work, name, certs_dir, "")?;
    let serving = start.elapsed();
    let options = ClientOptions { server: server.url(), certs: certs_dir.to_owned(), partner: probe.source.clone() };
    let mut client = connect(&options).await?;
    // A round no fill used, so the probe is a new event, not a duplicate.
    client.publish(probe.request(u64::MAX)).await?;
    let acked = start.elapsed();
    server.stop()?;
    Ok(ArmResult::new("recovery", 1, 0, acked).note(format!(
        "kill -9 with {stored} events stored → first publish acked in {:.2} s (listening after {:.2} s)",
        acked.as_secs_f64(),
        serving.as_secs_f64()
    )))
}

/// Reads every stored event of `types` from the start of the journal in `dir`, in this
/// process: what a replay costs without gRPC, TLS and the per-subscriber view.
pub fn journal_read_arm(dir: &Path, types: &[&str], expected: u64) -> anyhow::Result<ArmResult> {
    let defaults = loket_server::Config::default();
    let journal = Journal::open(&JournalConfig { dir: dir.to_owned(), ..defaults.journal_config() })?;
    let cpu0 = own_cpu()?;
    let start = Instant::now();
    let (mut next, mut read, mut bytes) = (1u64, 0u64, 0u64);
    loop {
        let events = journal.read_from(next, READ_CHUNK)?;
        let Some(last) = events.last() else { break };
        next = last.sequence + 1;
        for e in events.iter().filter(|e| types.contains(&e.event_type.as_str())) {
            read += 1;
            bytes += e.data.len() as u64;
        }
    }
    let elapsed = start.elapsed();
    let cpu = own_cpu()? - cpu0;
    journal.close()?;
    anyhow::ensure!(read >= expected, "the journal held {read} events of {types:?}, the replay delivered {expected}");
    Ok(ArmResult::new("journal-read", read, 0, elapsed)
        .cpu(cpu)
        .note(format!("in-process, {READ_CHUNK} per read, {:.0} MiB of payload", bytes as f64 / 1048576.0)))
}
