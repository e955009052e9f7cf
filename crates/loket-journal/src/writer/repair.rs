//! What the writer does when a batch fails: fail its callers, then repair the store so the
//! next batch starts from the last committed state.

use super::*;

impl Writer {
    pub(super) fn fail_batch(&mut self, error: &Error) {
        self.events.clear();
        self.outcomes.clear();
        self.written.clear();
        for reply in self.replies.drain(..) {
            let _ = reply.send(Err(clone_storage_error(error)));
        }
        // Rejections never reached the write loop if it failed early; those that did are in
        // `written_rejections`.
        for q in self.rejections.drain(..) {
            if let Some(reply) = q.reply {
                let _ = reply.send(Err(clone_storage_error(error)));
            }
        }
        for (_, reply) in self.written_rejections.drain(..) {
            if let Some(reply) = reply {
                let _ = reply.send(Err(clone_storage_error(error)));
            }
        }
    }

    /// Removes whatever a failed batch left above `committed`. sled keeps an IO error
    /// sticky (`Config::set_global_error`, reset only when a `Db` is started), so if the
    /// in-place cleanup fails the database is reopened, which also drops sled's unflushed
    /// in-memory state; anything of the batch that did reach the disk is then truncated.
    pub(super) fn repair(&mut self) -> Result<(), Error> {
        let in_place = self.shared.store().and_then(|store| self.clean_up(&store));
        let result = match in_place {
            Ok(()) => Ok(()),
            // While the disk stays full every batch fails here; reopening (which replays
            // sled's log) at most once a second keeps that from becoming a busy loop.
            Err(e) if self.last_reopen.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "journal: in-place repair failed, reopening storage");
                self.last_reopen = Some(Instant::now());
                self.reopen()
            }
        };
        if result.is_ok() {
            self.needs_repair = false;
        }
        result
    }

    fn reopen(&mut self) -> Result<(), Error> {
        self.shared.reopens.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.shared.store.write().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = slot.take() {
            // Readers hold a clone only for the duration of one call, and cannot take a new
            // one while we hold the slot, so this converges quickly. sled's file lock is
            // released only when the last handle is gone.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(store) => {
                        drop(store);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *slot = Some(still_shared);
                        return Err(Error::Storage(sled::Error::Io(std::io::Error::other(
                            "journal storage still in use, cannot reopen it",
                        ))));
                    }
                }
            }
        }
        let store = Arc::new(Store::open_retrying(&self.store_config)?);
        // Readers may use it right away: they never look above `committed`.
        *slot = Some(store.clone());
        drop(slot);
        self.faults.before_write()?;
        store.meta.insert(FLUSHED_MARK, &seq_key(self.committed))?;
        self.mark_written = self.committed;
        self.clean_up(&store)
    }

    /// Removes a failed batch's events and index entries, then flushes so that a crash
    /// cannot bring them back.
    fn clean_up(&mut self, store: &Store) -> Result<(), Error> {
        store.truncate_above(self.committed, &*self.faults)?;
        store.truncate_rejections_above(self.rejections_committed, &*self.faults)?;
        for (key, sequence) in &self.orphan_claims {
            if store.ids.get(key)?.as_deref() == Some(&seq_key(*sequence)[..]) {
                self.faults.before_write()?;
                store.ids.remove(key)?;
            }
        }
        self.faults.before_write()?;
        store.db.flush()?;
        self.orphan_claims.clear();
        Ok(())
    }
}

fn clone_storage_error(error: &Error) -> Error {
    match error {
        Error::Storage(e) => Error::Storage(e.clone()),
        Error::Corrupt { sequence, reason } => Error::Corrupt { sequence: *sequence, reason: reason.clone() },
        Error::Closed => Error::Closed,
        other => Error::Storage(sled::Error::Io(std::io::Error::other(other.to_string()))),
    }
}
