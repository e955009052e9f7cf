//! `GetQualityReport`: a partner reads its own figures, the quality readers everyone's.

use loket_domain::{FieldViolation, PartnerId};
use loket_quality::aggregate::parse_day;
use loket_quality::chain::HandoverReport;
use loket_quality::dimensions::{add_readiness, per_partner};
use loket_quality::{Filter, Report};

use super::Quality;
use crate::access::Access;
use crate::proto::{
    DayQuality, DimensionQuality, FieldQuality, HandoverDayQuality, HandoverItemQuality, HandoverKindQuality,
    QualityReport, QualityReportRequest, TypeQuality,
};
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
        let (report, handovers) = self.figures(&filter)?;
        Ok(to_proto(report, handovers))
    }

    /// The field figures with readiness among their dimensions, and the handover figures.
    pub fn figures(&self, filter: &Filter) -> Result<(Report, HandoverReport), Error> {
        let mut report = self.store.report(filter)?;
        let handovers = self.chain.store.report(filter)?;
        let readiness = handovers.readiness();
        add_readiness(&mut report.dimensions, &readiness);
        add_readiness(&mut report.partners, &per_partner(&readiness));
        Ok((report, handovers))
    }
}

fn to_proto(report: Report, handovers: HandoverReport) -> QualityReport {
    QualityReport {
        dimensions: report
            .dimensions
            .into_iter()
            .map(|d| DimensionQuality {
                partner: d.partner,
                r#type: d.event_type,
                published: d.published,
                accepted: d.accepted,
                validity: d.validity,
                mean_completeness: d.mean_completeness,
                timed: d.timed,
                timeliness_p50_seconds: d.timeliness_p50_seconds,
                timeliness_p90_seconds: d.timeliness_p90_seconds,
                duplicates: d.duplicates,
                uniqueness: d.uniqueness,
                handover_items_due: d.items_due,
                handover_items_met: d.items_met,
                readiness: d.readiness,
            })
            .collect(),
        handover_items: handovers
            .items
            .into_iter()
            .map(|i| HandoverItemQuality {
                handover: i.kind,
                item: i.item,
                partner: i.partner,
                r#type: i.event_type,
                due: i.due,
                met: i.met,
                missing: i.missing,
                stale: i.stale,
                unmet: i.unmet,
                met_rate: i.met_rate,
            })
            .collect(),
        handover_kinds: handovers
            .kinds
            .into_iter()
            .map(|k| HandoverKindQuality {
                handover: k.kind,
                handovers: k.handovers,
                ready: k.ready,
                ready_share: k.ready_share,
            })
            .collect(),
        handover_days: handovers
            .days
            .into_iter()
            .map(|d| HandoverDayQuality { day: d.day, handover: d.kind, handovers: d.handovers, ready: d.ready })
            .collect(),
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
