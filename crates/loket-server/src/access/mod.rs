//! Who may see what, at the gateway: who is calling (`identity.rs`), the compiled [`Policy`]
//! (pure rules in `loket-access`), the access store (consent index and denial log,
//! `store.rs`), the indexer that keeps the index up with the journal (`indexer.rs`), the
//! denial log as partners read it (`denials_log.rs`) and `EventStatus` (`status.rs`).

pub(crate) mod denials;
mod identity;
mod indexer;
mod status;
mod store;

use std::collections::BTreeSet;
use std::sync::Arc;

use loket_access::{Policy, SubscriberScan};
use loket_journal::StoredEvent;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use identity::IdentityMode;
pub use identity::PARTNER_HEADER;
pub(crate) use store::{AccessStore, DenialRecord, IndexedEvent};

use crate::config::{Config, TlsSource};
use crate::Error;

/// The gateway's access state; cheap to clone.
#[derive(Clone)]
pub(crate) struct Access {
    pub policy: Arc<Policy>,
    pub store: AccessStore,
    /// How callers are identified: client certificates, or on an insecure gateway a header.
    identity: IdentityMode,
    indexed: Arc<watch::Sender<u64>>,
    rules: Arc<String>,
}

impl Access {
    pub fn open(config: &Config, policy: Policy) -> Result<Self, Error> {
        let store = AccessStore::open(&config.access_dir(), 8 * 1024 * 1024)?;
        let rules = format!("{:?}|{:?}", config.access.medical_types, config.access.medical_fields);
        let indexed = store.indexed(&rules)?;
        let (tx, _) = watch::channel(indexed);
        let identity = match config.tls_source() {
            TlsSource::Insecure => IdentityMode::InsecureHeader,
            TlsSource::Files { .. } | TlsSource::Generated { .. } => IdentityMode::ClientCertificate,
        };
        Ok(Self { policy: Arc::new(policy), store, identity, indexed: Arc::new(tx), rules: Arc::new(rules) })
    }

    /// Waits until the index covers the journal up to `sequence`; false on shutdown.
    pub async fn indexed_up_to(&self, sequence: u64, shutdown: &CancellationToken) -> bool {
        let mut rx = self.indexed.subscribe();
        tokio::select! {
            done = rx.wait_for(|v| *v >= sequence) => done.is_ok(),
            () = shutdown.cancelled() => false,
        }
    }

    /// A subscriber's scan state just before journal position `next`: the consent state and
    /// the events withheld from it (the index must cover `next - 1`).
    pub fn scan_before(&self, partner: &str, types: BTreeSet<String>, next: u64) -> Result<SubscriberScan, Error> {
        let mut scans = self.scans_before(vec![SubscriberScan::new(partner, types)], next)?;
        Ok(scans.remove(0))
    }

    /// [`Access::scan_before`] for several fresh scans, in one pass over the index.
    pub fn scans_before(&self, mut scans: Vec<SubscriberScan>, next: u64) -> Result<Vec<SubscriberScan>, Error> {
        // Only scans that receive medical types carry state; the others start fresh
        // anywhere, without reading the index.
        let mut gated: Vec<&mut SubscriberScan> = scans.iter_mut().filter(|s| s.gated(&self.policy)).collect();
        if gated.is_empty() {
            return Ok(scans);
        }
        for entry in self.store.all() {
            let entry = entry?;
            if entry.sequence < next {
                for scan in &mut gated {
                    scan.step(&self.policy, &entry.facts());
                }
            }
        }
        Ok(scans)
    }
}

/// A stored event's payload as JSON.
pub(crate) fn parse(event: &StoredEvent) -> Result<Value, Error> {
    serde_json::from_slice(&event.data)
        .map_err(|e| Error::Access(format!("stored event {} is not JSON: {e}", event.sequence)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_shipped_policy_fits_the_built_in_schemas() {
        let config = Config::parse("", "defaults", &HashMap::new()).unwrap();
        let policy = config.policy(&loket_schema::Registry::embedded().unwrap()).unwrap();
        assert!(policy.subscribable("quality").is_empty());
        assert!(policy.is_auditor("quality"));
        assert!(!policy.may_publish("quality", "baggage"));
        assert!(policy.may_be_medical("medical-file-transfer"));
        assert!(policy.may_export("quality") && !policy.may_export("dtv"));
        assert!(policy.reads_all_quality("quality") && !policy.reads_all_quality("kmar"));
    }
}
