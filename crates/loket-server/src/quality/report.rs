//! `GetQualityReport`: a partner reads its own figures, the quality readers everyone's.

use loket_domain::{FieldViolation, PartnerId};
use loket_quality::aggregate::parse_day;
use loket_quality::Filter;

use super::Quality;
use crate::access::Access;
use crate::proto::{DayQuality, FieldQuality, QualityReport, QualityReportRequest, TypeQuality};
use crate::Error;

impl Quality {
    /// The figures `req` selects, as `caller` may read them; every problem at once.
    pub fn report(
        &self,
        access: &Access,
        registry: &loket_schema::Registry,
        caller: &PartnerId,
        req: QualityReportRequest,
    ) -> Result<QualityReport, Error> {
        let reader = access.policy.reads_all_quality(caller.as_str());
        let partners = if req.partners.is_empty() {
            (!reader).then(|| vec![caller.to_string()])
        } else {
            if let Some(other) = req.partners.iter().find(|p| !reader && p.as_str() != caller.as_str()) {
                return Err(Error::QualityAccessDenied { caller: caller.to_string(), requested: other.clone() });
            }
            Some(req.partners)
        };
        let mut problems = Vec::new();
        if !req.r#type.is_empty() {
            if let Err(e) = registry.resolve(&req.r#type, None) {
                problems.push(FieldViolation::new("type", e.to_string()));
            }
        }
        let mut day = |field: &str, text: &str| {
            if text.is_empty() {
                return None;
            }
            let parsed = parse_day(text);
            if parsed.is_none() {
                problems.push(FieldViolation::new(field, "must be a date like 2024-03-15"));
            }
            parsed
        };
        let from_day = day("from_day", &req.from_day);
        let to_day = day("to_day", &req.to_day);
        if !problems.is_empty() {
            return Err(Error::InvalidReportRequest(problems));
        }
        let filter = Filter { partners, event_type: (!req.r#type.is_empty()).then_some(req.r#type), from_day, to_day };
        Ok(to_proto(self.store.report(&filter)?))
    }
}

fn to_proto(report: loket_quality::Report) -> QualityReport {
    QualityReport {
        fields: report
            .fields
            .into_iter()
            .map(|f| FieldQuality {
                partner: f.partner,
                r#type: f.event_type,
                field: f.field,
                seen: f.seen,
                filled: f.filled,
                fill_rate: f.fill_rate,
            })
            .collect(),
        types: report
            .types
            .into_iter()
            .map(|t| TypeQuality {
                partner: t.partner,
                r#type: t.event_type,
                events: t.events,
                mean_completeness: t.mean_completeness,
                rejected: t.rejected,
                rejection_rate: t.rejection_rate,
                rejections: t.rejections.into_iter().collect(),
                rules_failed: t.rules_failed.into_iter().collect(),
            })
            .collect(),
        days: report
            .days
            .into_iter()
            .map(|d| DayQuality {
                day: d.day,
                partner: d.partner,
                r#type: d.event_type,
                events: d.events,
                mean_completeness: d.mean_completeness,
            })
            .collect(),
    }
}
