//! EraseCase: an auditor erases every payload of a case. The journal destroys the case's
//! key (crypto-shredding: the journal's events and rejection excerpts and the access
//! index's copies were all sealed with it) and writes the erasure record; the access index
//! and the handover state drop what they keep of the case; a `case-erasure` notice is
//! journalled, from which subscribers get tombstones and the Kafka relay null-value
//! records (`view/tombstones.rs`).

use std::sync::Arc;

use loket_domain::time::now_micros;
use loket_domain::{FieldViolation, PartnerId, ERASURE_TYPE, GATEWAY_SOURCE, JSON_CONTENT_TYPE};
use loket_journal::{Journal, NewEvent};
use loket_quality::chain::ChainStore;

use crate::access::Access;
use crate::processing::Processing;
use crate::proto::timestamp::from_micros;
use crate::proto::{EraseCaseReply, EraseCaseRequest};
use crate::view::ErasureNotice;
use crate::Error;

/// What an erasure touches.
#[derive(Clone)]
pub(crate) struct Erasure {
    pub journal: Journal,
    pub access: Access,
    pub chain: Arc<ChainStore>,
}

impl Erasure {
    pub async fn erase(&self, caller: &PartnerId, req: EraseCaseRequest) -> Result<EraseCaseReply, Error> {
        if !self.access.policy.is_auditor(caller.as_str()) {
            return Err(Error::ErasureNotAllowed { partner: caller.to_string() });
        }
        let mut problems = Vec::new();
        if req.case.trim().is_empty() {
            problems.push(FieldViolation::new("case", "the case (V-number) to erase is required"));
        }
        if req.reason.trim().is_empty() {
            problems.push(FieldViolation::new("reason", "say why the case is erased (it is kept in the record)"));
        }
        if !problems.is_empty() {
            return Err(Error::InvalidErasure(problems));
        }
        let at = now_micros();
        let (journal, case, actor, reason) = (self.journal.clone(), req.case.clone(), caller.to_string(), req.reason);
        let record = tokio::task::spawn_blocking(move || journal.erase_case(&case, &actor, &reason, at))
            .await
            .map_err(|e| Error::TaskFailed(e.to_string()))??
            .ok_or_else(|| Error::CaseNotFound { case: req.case.clone() })?;
        let index_removed = self.access.store.erase_case(&req.case)?;
        let had_state = self.chain.erase_case(&req.case)?;
        let notice = ErasureNotice { erasure: record.number, sequences: record.stripped.clone() };
        let appended = self
            .journal
            .submit(NewEvent {
                source: GATEWAY_SOURCE.to_owned(),
                id: format!("erasure-{}", record.number),
                event_type: ERASURE_TYPE.to_owned(),
                schema_version: 1,
                dataschema: format!("urn:loket:gateway:{ERASURE_TYPE}:v1"),
                subject: req.case.clone(),
                time_micros: Some(at),
                datacontenttype: JSON_CONTENT_TYPE.to_owned(),
                data: serde_json::to_vec(&notice).map_err(|e| Error::TaskFailed(e.to_string()))?,
                completeness: 1.0,
                missing_expected: Vec::new(),
                extensions: Default::default(),
                traceparent: String::new(),
                tracestate: String::new(),
            })
            .await?;
        // The erasure is a processing of the person's data too (Logboek dataverwerkingen).
        self.access.processing.record(Processing {
            operation: "erasure",
            channel: "grpc",
            partner: caller.as_str(),
            event_type: ERASURE_TYPE,
            event_id: &format!("erasure-{}", record.number),
            sequence: appended.sequence,
            subject: &req.case,
            traceparent: "",
            parent_span: String::new(),
            started_micros: at,
        });
        tracing::info!(
            erasure = record.number,
            by = %caller,
            events = record.stripped.len(),
            rejections = record.rejections.len(),
            index_removed,
            handover_state = had_state,
            notice = appended.sequence,
            "case erased"
        );
        Ok(EraseCaseReply {
            erasure: record.number,
            sequences: record.stripped,
            rejections: record.rejections,
            erased_at: Some(from_micros(at)),
            notice_sequence: appended.sequence,
        })
    }
}
