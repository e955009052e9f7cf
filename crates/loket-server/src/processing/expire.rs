//! Retention of the processing log (`[retention] processing`): records that ended before
//! a cut-off are removed. Batches are stored in write order, which is the order records
//! ended in, so a pass reads batches from the oldest until one holds only records to keep
//! (`store::expire`); it runs in the background compaction, never on the writer's thread.

use super::{store, ProcessingLog};
use crate::Error;

impl ProcessingLog {
    /// Removes the records that ended before `before` (Unix µs); returns how many.
    pub fn expire(&self, before: i64) -> Result<u64, Error> {
        let Some(inner) = &self.inner else { return Ok(0) };
        store::expire(&inner.db, before)
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
