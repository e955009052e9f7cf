//! The record of every export of the message log in the access store (tree `exports`):
//! who, when, which filters, how many entries; written before the first entry leaves.

use serde::{Deserialize, Serialize};

use super::store::{corrupt, storage, AccessStore};
use crate::Error;

/// One export of the message log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ExportRecord {
    /// The exporting partner, or "operator" for an offline export.
    pub partner: String,
    pub started_at_micros: i64,
    /// "full" or "pseudonymised".
    pub mode: String,
    pub filters: String,
    pub entries: u64,
    /// "started", "completed" or "interrupted".
    pub state: String,
    pub finished_at_micros: Option<i64>,
}

impl AccessStore {
    /// Records an export as started and makes it durable before returning, so that no
    /// entry leaves unrecorded; returns the key to finish it with.
    pub async fn export_started(&self, record: &ExportRecord) -> Result<Vec<u8>, Error> {
        let id = self.db.generate_id().map_err(storage)?;
        let mut key = record.started_at_micros.to_be_bytes().to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        let value = serde_json::to_vec(record).map_err(|e| corrupt("export record", e))?;
        self.exports.insert(&key, value).map_err(storage)?;
        self.db.flush_async().await.map_err(storage)?;
        Ok(key)
    }

    /// Completes the export record under `key` with what was sent, durably.
    pub fn export_finished(&self, key: &[u8], entries: u64, completed: bool, at_micros: i64) -> Result<(), Error> {
        let Some(value) = self.exports.get(key).map_err(storage)? else {
            return Err(Error::Access("an export record disappeared".to_owned()));
        };
        let mut record: ExportRecord = serde_json::from_slice(&value).map_err(|e| corrupt("export record", e))?;
        record.entries = entries;
        record.state = if completed { "completed" } else { "interrupted" }.to_owned();
        record.finished_at_micros = Some(at_micros);
        let value = serde_json::to_vec(&record).map_err(|e| corrupt("export record", e))?;
        self.exports.insert(key, value).map_err(storage)?;
        self.exports.flush().map_err(storage)?;
        Ok(())
    }

    /// The exports started at or after `since` (µs), by `partner` when given, oldest first.
    pub fn exports(&self, since: i64, partner: Option<&str>) -> Result<Vec<ExportRecord>, Error> {
        let mut out = Vec::new();
        for item in self.exports.range(since.to_be_bytes().to_vec()..) {
            let (_, v) = item.map_err(storage)?;
            let record: ExportRecord = serde_json::from_slice(&v).map_err(|e| corrupt("export record", e))?;
            if partner.is_none_or(|p| p == record.partner) {
                out.push(record);
            }
        }
        Ok(out)
    }
}
