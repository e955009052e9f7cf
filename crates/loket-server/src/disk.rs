//! `[journal] min_free_bytes`: watching the free space under the data directory. Below the
//! minimum, publishes are refused with `DISK_LOW` (`RESOURCE_EXHAUSTED`) before sled runs
//! out of room, and the health service reports publishing (`loket.v1.Gateway.Publish`)
//! NOT_SERVING; subscriptions, which only read, go on. When space returns, publishing
//! resumes by itself at the next check.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::Error;

/// The health service name for publishing, beside `loket.v1.Gateway` (which stays
/// SERVING while subscriptions work).
pub const PUBLISH_HEALTH: &str = "loket.v1.Gateway.Publish";

/// How often the free space is read: one statvfs, cheap. Short, because a fast publisher
/// writes this interval's worth of data before it is refused.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Shared view of the disk; cheap to clone.
#[derive(Clone)]
pub(crate) struct DiskGuard {
    state: Arc<State>,
}

struct State {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Result<u64, Error> {
    let stat = rustix::fs::statvfs(dir)
        .map_err(|e| Error::io(format!("cannot read the free space of {}", dir.display()), e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize as u64))
}

impl DiskGuard {
    /// Reads the free space once, so a gateway started on a full disk refuses at once.
    pub fn new(dir: PathBuf, min_free: u64) -> Result<DiskGuard, Error> {
        let free = free_bytes(&dir)?;
        let low = min_free > 0 && free < min_free;
        if low {
            tracing::warn!(
                free,
                min_free,
                reason = "DISK_LOW",
                "disk space low: publishes are refused until space returns"
            );
        }
        Ok(DiskGuard {
            state: Arc::new(State { dir, min_free, free: AtomicU64::new(free), low: AtomicBool::new(low) }),
        })
    }

    /// Whether a publish may be taken now.
    pub fn check(&self) -> Result<(), Error> {
        if self.state.low.load(Ordering::Acquire) {
            Err(Error::DiskLow { free: self.state.free.load(Ordering::Relaxed), min_free: self.state.min_free })
        } else {
            Ok(())
        }
    }

    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// Free bytes at the last check.
    pub fn free(&self) -> u64 {
        self.state.free.load(Ordering::Relaxed)
    }

    /// Re-reads the free space until `stopping`, moving the publish health with it.
    pub async fn run(self, health: HealthReporter, stopping: CancellationToken) {
        let status = |low: bool| if low { ServingStatus::NotServing } else { ServingStatus::Serving };
        health.set_service_status(PUBLISH_HEALTH, status(self.state.low.load(Ordering::Acquire))).await;
        if self.state.min_free == 0 {
            return;
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => {}
            }
            let free = match free_bytes(&self.state.dir) {
                Ok(free) => free,
                Err(e) => {
                    tracing::warn!(error = %e, "disk check failed; keeping the last state");
                    continue;
                }
            };
            self.state.free.store(free, Ordering::Relaxed);
            let low = free < self.state.min_free;
            if self.state.low.swap(low, Ordering::AcqRel) != low {
                if low {
                    tracing::warn!(
                        free,
                        min_free = self.state.min_free,
                        reason = "DISK_LOW",
                        "disk space low: publishes are refused until space returns"
                    );
                } else {
                    tracing::info!(free, min_free = self.state.min_free, "disk space back: publishing resumed");
                }
                health.set_service_status(PUBLISH_HEALTH, status(low)).await;
            }
        }
    }
}

/// Bytes the files under `dir` take (0 when it does not exist): a store's size on disk.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .map_while(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
