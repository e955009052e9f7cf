//! Per-case data keys, for crypto-shredding: every payload the journal stores for a case
//! (events, rejection excerpts, and what other stores seal through [`crate::Journal::seal`])
//! is encrypted with that case's key (XChaCha20-Poly1305, a random 24-byte nonce per
//! payload), and erasing the case destroys the key.
//!
//! The keys live in a small file of fixed-size slots beside sled's files, not in sled:
//! sled keeps old values in its log segments until it rewrites them, while a slot here is
//! overwritten in place and fsynced, so a destroyed key is gone from the disk. A slot holds
//! SHA-256 of the case (never the V-number itself) and the key; an erased slot holds zeros
//! and the number of the purge record that erased it. Slots are appended when a case first
//! appears; the writer fsyncs the file before the batch that uses a new key is flushed, so
//! no acknowledged event refers to a key that a crash could lose. Lookups are in memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use prost::Message;

use crate::event::RejectionTexts;
use crate::{Error, StoredEvent, StoredRejection};

/// The key file's name inside the journal directory.
pub const KEY_FILE: &str = "case-keys";
const SLOT: usize = 80;
const LIVE: u8 = 1;
const ERASED: u8 = 2;
const NONCE: usize = 24;

enum Slot {
    Live(Key),
    /// Erased by this purge record.
    Erased(u64),
}

struct Slots {
    /// Slot id (1-based) of each case's current key, by SHA-256 of the case.
    by_case: HashMap<[u8; 32], u32>,
    slots: Vec<Slot>,
}

/// What opening a sealed payload gives.
pub enum Opened {
    Plain(Vec<u8>),
    /// The case was erased by this purge record.
    Erased(u64),
}

pub(crate) struct KeyStore {
    file: Mutex<File>,
    slots: RwLock<Slots>,
    /// Slots appended since the last [`KeyStore::sync`].
    dirty: std::sync::atomic::AtomicBool,
}

fn io(e: std::io::Error) -> Error {
    Error::Storage(sled::Error::Io(e))
}

fn case_hash(case: &str) -> [u8; 32] {
    Sha256::digest(case.as_bytes()).into()
}

impl KeyStore {
    /// Opens (creating) the key file in `dir`. A torn last slot (a crash while appending a
    /// key that no acknowledged entry can use yet) is cut off.
    pub fn open(dir: &Path) -> Result<KeyStore, Error> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(KEY_FILE))
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let whole = bytes.len() / SLOT * SLOT;
        if whole != bytes.len() {
            file.set_len(whole as u64).map_err(io)?;
        }
        let mut slots = Slots { by_case: HashMap::new(), slots: Vec::new() };
        for (i, slot) in bytes[..whole].chunks_exact(SLOT).enumerate() {
            match slot[0] {
                LIVE => {
                    let case: [u8; 32] = slot[16..48].try_into().expect("32 bytes");
                    slots.by_case.insert(case, i as u32 + 1);
                    slots.slots.push(Slot::Live(*Key::from_slice(&slot[48..80])));
                }
                ERASED => slots.slots.push(Slot::Erased(u64::from_be_bytes(slot[8..16].try_into().expect("8 bytes")))),
                other => {
                    return Err(Error::Corrupt { sequence: 0, reason: format!("key slot {} has state {other}", i + 1) })
                }
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(KeyStore { file: Mutex::new(file), slots: RwLock::new(slots), dirty: false.into() })
    }

    /// The slot of `case`'s key, creating the key (appended, not yet fsynced) if it has none.
    pub fn slot_for(&self, case: &str) -> Result<u32, Error> {
        let hash = case_hash(case);
        if let Some(slot) = self.slots.read().unwrap_or_else(|e| e.into_inner()).by_case.get(&hash) {
            return Ok(*slot);
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.by_case.get(&hash) {
            return Ok(*slot);
        }
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut record = [0u8; SLOT];
        record[0] = LIVE;
        record[16..48].copy_from_slice(&hash);
        record[48..80].copy_from_slice(&key);
        self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(&record).map_err(io)?;
        slots.slots.push(Slot::Live(key));
        let id = slots.slots.len() as u32;
        slots.by_case.insert(hash, id);
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        Ok(id)
    }

    /// Makes appended keys durable (before the entries that use them are flushed).
    pub fn sync(&self) -> Result<(), Error> {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.file.lock().unwrap_or_else(|e| e.into_inner()).sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// `slot id ‖ nonce ‖ ciphertext` of `plain` under `case`'s key.
    pub fn seal(&self, case: &str, plain: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        let slot = self.slot_for(case)?;
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let Some(Slot::Live(key)) = slots.slots.get(slot as usize - 1) else {
            return Err(Error::Corrupt { sequence: 0, reason: format!("key slot {slot} is not live") });
        };
        // ThreadRng is a CSPRNG seeded (and reseeded) from the OS; a 192-bit random nonce
        // from it never repeats in practice, and costs no system call per event.
        let mut nonce = XNonce::default();
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let sealed = XChaCha20Poly1305::new(key)
            .encrypt(&nonce, plain)
            .map_err(|_| Error::Corrupt { sequence: 0, reason: "payload encryption failed".into() })?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((slot, out))
    }

    /// Whether `slot` holds a key (not erased).
    pub fn is_live(&self, slot: u32) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        matches!(slots.slots.get((slot as usize).wrapping_sub(1)), Some(Slot::Live(_)))
    }

    /// Decrypts what [`KeyStore::seal`] made with the key in `slot`.
    pub fn open_sealed(&self, slot: u32, sealed: &[u8]) -> Result<Opened, Error> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let bad =
            |reason: &str| Error::Corrupt { sequence: 0, reason: format!("sealed payload (key {slot}): {reason}") };
        match slots.slots.get((slot as usize).wrapping_sub(1)) {
            Some(Slot::Erased(purge)) => Ok(Opened::Erased(*purge)),
            Some(Slot::Live(key)) => {
                if sealed.len() < NONCE {
                    return Err(bad("too short"));
                }
                let (nonce, ciphertext) = sealed.split_at(NONCE);
                XChaCha20Poly1305::new(key)
                    .decrypt(XNonce::from_slice(nonce), ciphertext)
                    .map(Opened::Plain)
                    .map_err(|_| bad("does not decrypt"))
            }
            None => Err(bad("no such key")),
        }
    }

    /// `event` as readers get it: its payload opened with its case key, or, when the case
    /// was erased, none and `purged_by` set to the erasure's purge record.
    pub fn open_event(&self, mut event: StoredEvent) -> Result<StoredEvent, Error> {
        if event.key != 0 {
            let sealed = std::mem::take(&mut event.data);
            match self.open_sealed(event.key, &sealed)? {
                Opened::Plain(plain) => event.data = plain,
                Opened::Erased(purge) => event.purged_by = purge,
            }
            event.key = 0;
        }
        Ok(event)
    }

    /// The same for a rejection's payload excerpt.
    pub fn open_rejection(&self, mut r: StoredRejection) -> Result<StoredRejection, Error> {
        if r.key != 0 {
            let sealed = std::mem::take(&mut r.data);
            let texts = std::mem::take(&mut r.sealed_texts);
            // Records from before the texts were sealed always had an excerpt.
            if !sealed.is_empty() || texts.is_empty() {
                match self.open_sealed(r.key, &sealed)? {
                    Opened::Plain(plain) => r.data = plain,
                    Opened::Erased(purge) => r.purged_by = purge,
                }
            }
            if !texts.is_empty() {
                match self.open_sealed(r.key, &texts)? {
                    Opened::Plain(plain) => {
                        let texts = RejectionTexts::decode(&plain[..]).map_err(|e| Error::Corrupt {
                            sequence: r.number,
                            reason: format!("rejection texts: {e}"),
                        })?;
                        r.message = texts.message;
                        r.violations = texts.violations;
                    }
                    Opened::Erased(purge) => r.purged_by = purge,
                }
            }
            r.key = 0;
        }
        Ok(r)
    }

    /// Seals a rejection about a case as it is stored: its excerpt and its texts (see
    /// [`StoredRejection::sealed_texts`]) with the case's key. Called after it is hashed.
    pub fn seal_rejection(&self, r: &mut StoredRejection) -> Result<(), Error> {
        if r.subject.is_empty() {
            return Ok(());
        }
        if !r.data.is_empty() {
            let (slot, sealed) = self.seal(&r.subject, &r.data)?;
            r.data = sealed;
            r.key = slot;
        }
        if !r.message.is_empty() || !r.violations.is_empty() {
            let texts = RejectionTexts {
                message: std::mem::take(&mut r.message),
                violations: std::mem::take(&mut r.violations),
            };
            let (slot, sealed) = self.seal(&r.subject, &texts.encode_to_vec())?;
            r.sealed_texts = sealed;
            r.key = slot;
        }
        Ok(())
    }

    /// The slot of `case`'s current key, if it has one (creates none).
    pub fn current_slot(&self, case: &str) -> Option<u32> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).by_case.get(&case_hash(case)).copied()
    }

    /// Destroys the key in `slot` (a live one): the slot is overwritten in place with zeros
    /// and the purge record's number, and the file is fsynced before this returns.
    pub fn erase(&self, slot: u32, purge: u64) -> Result<(), Error> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(slots.slots.get((slot as usize).wrapping_sub(1)), Some(Slot::Live(_))) {
            return Ok(());
        }
        slots.by_case.retain(|_, s| *s != slot);
        let mut record = [0u8; SLOT];
        record[0] = ERASED;
        record[8..16].copy_from_slice(&purge.to_be_bytes());
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all_at(&record, (slot as u64 - 1) * SLOT as u64).map_err(io)?;
        file.sync_data().map_err(io)?;
        slots.slots[slot as usize - 1] = Slot::Erased(purge);
        Ok(())
    }
}
