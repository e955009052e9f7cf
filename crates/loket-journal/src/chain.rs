//! The tamper-evident hash chain over every journal entry, accepted and rejected, in the
//! order the writer stored them.
//!
//! Entry n carries its chain position n, the hash of entry n-1 (`prev_hash`) and its own
//! `hash` = SHA-256(kind byte ‖ the record encoded with `hash` empty). Changing any byte of
//! an entry breaks its hash; removing or reordering entries breaks the positions and the
//! `prev_hash` links. Rewriting an entry *and every later one* is only caught against a
//! tip hash kept elsewhere (`loket audit verify` prints it).

use prost::Message;
use sha2::{Digest, Sha256};

use crate::event::{StoredEvent, StoredRejection};

/// `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

const ACCEPTED: u8 = b'A';
const REJECTED: u8 = b'R';

fn digest(kind: u8, record: &impl Message) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([kind]);
    hasher.update(record.encode_to_vec());
    hasher.finalize().into()
}

/// The hash an accepted entry must carry, computed from its other fields.
pub fn event_hash(event: &StoredEvent) -> [u8; 32] {
    if event.hash.is_empty() {
        return digest(ACCEPTED, event);
    }
    let mut copy = event.clone();
    copy.hash.clear();
    digest(ACCEPTED, &copy)
}

/// The hash a rejection entry must carry, computed from its other fields.
pub fn rejection_hash(rejection: &StoredRejection) -> [u8; 32] {
    if rejection.hash.is_empty() {
        return digest(REJECTED, rejection);
    }
    let mut copy = rejection.clone();
    copy.hash.clear();
    digest(REJECTED, &copy)
}

/// Position and hash of the last entry of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Chain position of the last entry (0: empty).
    pub position: u64,
    /// Its hash ([`GENESIS`] when empty).
    pub hash: [u8; 32],
}

impl Default for Tip {
    fn default() -> Self {
        Tip { position: 0, hash: GENESIS }
    }
}

impl Tip {
    /// Gives `event` its place after this tip; [`Tip::hash_event`] then hashes it.
    pub(crate) fn prepare_event(&self, event: &mut StoredEvent) {
        event.chain = self.position + 1;
        event.prev_hash.clear();
        event.prev_hash.extend_from_slice(&self.hash);
        event.hash.clear();
    }

    /// Hashes the prepared `event` (SHA-256 over the kind and its encoding without the
    /// hash; equal to [`event_hash`]) into `scratch`, sets its hash and moves the tip to it.
    /// The record is stored in another form (its payload sealed) than the one hashed.
    pub(crate) fn hash_event(&mut self, event: &mut StoredEvent, scratch: &mut Vec<u8>) {
        scratch.clear();
        event.encode_raw(scratch);
        let mut hasher = Sha256::new();
        hasher.update([ACCEPTED]);
        hasher.update(&scratch[..]);
        let hash: [u8; 32] = hasher.finalize().into();
        event.hash = hash.to_vec();
        *self = Tip { position: event.chain, hash };
    }

    /// Links `rejection` after this tip and moves the tip to it.
    pub(crate) fn link_rejection(&mut self, rejection: &mut StoredRejection) {
        rejection.chain = self.position + 1;
        rejection.prev_hash = self.hash.to_vec();
        rejection.hash.clear();
        let hash = digest(REJECTED, rejection);
        rejection.hash = hash.to_vec();
        *self = Tip { position: rejection.chain, hash };
    }
}

pub(crate) fn to_array(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}
