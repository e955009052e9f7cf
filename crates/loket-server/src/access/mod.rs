//! Who may see what, at the gateway: who is calling (`identity.rs`), the compiled [`Policy`]
//! (pure rules in `loket-access`), the access store (consent index and denial log,
//! `store.rs`), the indexer that keeps the index up with the journal (`indexer.rs`), the
//! denial log as partners read it (`denials_log.rs`) and `EventStatus` (`status.rs`).

pub(crate) mod denials;
mod exports;
mod identity;
mod indexer;
mod status;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use loket_access::{Policy, SubscriberScan, CONSENT_TYPE};
use loket_domain::Profile;
use loket_journal::{Journal, StoredEvent};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use exports::ExportRecord;
pub use identity::PARTNER_HEADER;
pub(crate) use identity::{presented_by, Certified, IdentityMode, Presented};
pub(crate) use store::{AccessStore, DenialRecord, IndexedClaim, IndexedEvent};

use crate::config::{Config, IdentitySource, TlsSource};
use crate::processing::ProcessingLog;
use crate::Error;

/// Journal events read per step when the consent claims are brought up to date at start.
const CLAIM_CHUNK: usize = 1024;
/// The access database's sled cache.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Who registered each consent form (`consentId` → registrar), as intake checks it: a
/// form belongs to the registrar that published it first. Claimed when a form passes
/// intake, before it is journalled, so that two registrars racing for one id cannot both
/// get it. (Consent books hold the same line in journal order, so what they decide never
/// depends on this map; it lets intake refuse a foreign reuse with a clear error.) Ids are
/// held as keyed digests, as the access store keeps them.
#[derive(Clone)]
pub(crate) struct ConsentClaims {
    key: Arc<[u8; 32]>,
    owners: Arc<Mutex<HashMap<[u8; 32], String>>>,
}

impl Default for ConsentClaims {
    /// Claims under a fresh random key (a gateway without a store to keep one in).
    fn default() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::new(key)
    }
}

impl ConsentClaims {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key: Arc::new(key), owners: Default::default() }
    }

    /// The keyed digest a form's id is known by.
    pub fn digest(&self, consent_id: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.key.as_slice());
        hash.update(consent_id.as_bytes());
        hash.finalize().into()
    }

    /// Claims `consent_id` for `registrar`; the owner when another registrar has it.
    pub fn claim(&self, consent_id: &str, registrar: &str) -> Result<(), String> {
        self.claim_digest(self.digest(consent_id), registrar)
    }

    fn claim_digest(&self, digest: [u8; 32], registrar: &str) -> Result<(), String> {
        let mut owners = self.owners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match owners.get(&digest) {
            Some(owner) if owner != registrar => Err(owner.clone()),
            Some(_) => Ok(()),
            None => {
                owners.insert(digest, registrar.to_owned());
                Ok(())
            }
        }
    }
}

/// The gateway's access state; cheap to clone.
#[derive(Clone)]
pub(crate) struct Access {
    pub policy: Arc<Policy>,
    pub store: AccessStore,
    /// How callers are identified: client certificates, or on an insecure gateway a header.
    identity: IdentityMode,
    indexed: Arc<watch::Sender<u64>>,
    rules: Arc<String>,
    /// The registrar of every consent form.
    pub claims: ConsentClaims,
    /// How events are named on every output (NL GOV profile).
    pub profile: Arc<Profile>,
    /// Every processing of personal data.
    pub processing: ProcessingLog,
}

impl Access {
    /// The access database of `config`, for [`Access::open_with`]: the slow part of an
    /// open, which the gateway does beside the journal's.
    pub fn open_db(config: &Config) -> Result<sled::Db, Error> {
        AccessStore::open_db(&config.access_dir(), CACHE_BYTES)
    }

    /// How callers are identified (the TLS handshake resolves what a certificate presents
    /// under it).
    pub fn identity_mode(&self) -> IdentityMode {
        self.identity
    }

    /// The access rules, their index and logs, in `db` (from [`Access::open_db`]).
    pub fn open_with(config: &Config, policy: Policy, journal: &Journal, db: sled::Db) -> Result<Self, Error> {
        let store = AccessStore::with_db(db, Some(journal.clone()))?;
        // The index and the withholdings recorded with it follow from these rules (and
        // from index entries that name their publisher: "v2", sealed with their case
        // keys: "v3"; with the consent claims beside them: "v4").
        let rules = format!(
            "v4|{:?}|{:?}|{:?}",
            config.access.medical_types, config.access.medical_fields, config.access.consent_registrars
        );
        let indexed = store.indexed(&rules)?;
        let claims = ConsentClaims::new(store.claims_key()?);
        let (tx, _) = watch::channel(indexed);
        let identity = match (config.tls_source(), config.tls.identity) {
            (TlsSource::Insecure, _) => IdentityMode::InsecureHeader,
            (_, IdentitySource::Cn) => IdentityMode::CommonName,
            (_, IdentitySource::Oin) => IdentityMode::Oin,
        };
        Ok(Self {
            policy: Arc::new(policy),
            store,
            identity,
            indexed: Arc::new(tx),
            rules: Arc::new(rules),
            claims,
            profile: Arc::new(config.profile()?),
            processing: if config.processing.enabled {
                ProcessingLog::open(&config.processing_dir(), config.processing.activities.clone())?
            } else {
                ProcessingLog::disabled()
            },
        })
    }

    /// Fills the consent claims from every consent form the journal holds: the claims the
    /// index keeps, then the journal past the index (after a crash, a little; after a
    /// change of the medical rules, which empties the index, all of it). No sealed payload
    /// is opened for the indexed ones: with a long history, opening the indexed consents
    /// was most of the time before the gateway listened.
    pub fn load_consent_claims(&self, journal: &Journal) -> Result<(), Error> {
        // The index is kept by case: order its claims by sequence, since the first
        // registrar in journal order owns a form and later claims lose.
        let mut indexed = self.store.claims().collect::<Result<Vec<_>, Error>>()?;
        indexed.sort_unstable_by_key(|(sequence, ..)| *sequence);
        for (_, registrar, digest) in indexed {
            if self.policy.is_consent_registrar(&registrar) {
                let _ = self.claims.claim_digest(digest, &registrar);
            }
        }
        let mut next = *self.indexed.borrow() + 1;
        loop {
            // Only consents are opened: the start waits for this.
            let (batch, read) = journal.read_where(next, CLAIM_CHUNK, |e| e.event_type == CONSENT_TYPE)?;
            let Some(read) = read else { return Ok(()) };
            next = read + 1;
            for event in &batch {
                if let Some(id) = self.claim_of(event, &parse(event)?) {
                    let _ = self.claims.claim_digest(id.digest, &id.registrar);
                }
            }
        }
    }

    /// The claim a journalled consent form makes: `None` when it is not from a registrar
    /// or names no form id (intake refuses both; an older journal may hold them).
    fn claim_of(&self, event: &StoredEvent, data: &Value) -> Option<IndexedClaim> {
        let id = data.get("consentId").and_then(Value::as_str)?;
        self.policy.is_consent_registrar(&event.source).then(|| IndexedClaim {
            case: event.subject.clone(),
            sequence: event.sequence,
            registrar: event.source.clone(),
            digest: self.claims.digest(id),
        })
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
