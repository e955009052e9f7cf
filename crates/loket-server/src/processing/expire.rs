//! Retention of the processing log (`[retention] processing`): records that ended before
//! a cut-off are removed. Records are keyed by subject for the auditor's one range scan,
//! not by time, so a pass reads every record's end time; the pass runs in the background
//! compaction, never on the writer's thread, and the log it scans is the one retention
//! keeps bounded.

use serde::Deserialize;

use super::ProcessingLog;
use crate::Error;

/// The one member expiry reads; the others are skipped unbuilt.
#[derive(Deserialize)]
struct Ended {
    ended_micros: i64,
}

impl ProcessingLog {
    /// Removes the records that ended before `before` (Unix µs); returns how many.
    pub fn expire(&self, before: i64) -> Result<u64, Error> {
        let Some(inner) = &self.inner else { return Ok(0) };
        let storage = |e: sled::Error| Error::Processing(e.to_string());
        let mut removed = 0;
        for item in inner.db.iter() {
            let (key, value) = item.map_err(storage)?;
            let ended: Ended = serde_json::from_slice(&value).map_err(|e| Error::Processing(e.to_string()))?;
            if ended.ended_micros < before {
                inner.db.remove(key).map_err(storage)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use loket_domain::time::now_micros;

    use super::super::Processing;
    use super::*;

    #[tokio::test]
    async fn records_that_ended_before_the_cut_off_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = ProcessingLog::open(dir.path(), Default::default()).unwrap();
        let case = "0000000123";
        let record = |sequence| Processing {
            operation: "publish",
            channel: "grpc",
            partner: "dji",
            event_type: "baggage",
            event_id: "b",
            sequence,
            subject: case,
            traceparent: "",
            parent_span: String::new(),
            started_micros: 0,
        };
        log.record(record(1));
        log.record(record(2));
        assert_eq!(log.list(case).await.unwrap().len(), 2, "durable once listed");
        assert_eq!(log.expire(0).unwrap(), 0, "none ended before 1970");
        assert_eq!(log.expire(now_micros() + 1).unwrap(), 2);
        assert!(log.list(case).await.unwrap().is_empty());
        log.close().unwrap();
    }
}
