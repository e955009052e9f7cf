//! `loket status`, `loket audit denials` and `loket audit exports`.

use std::process::ExitCode;

use anyhow::Context;
use loket_messagelog::timestamp::{parse_rfc3339, rfc3339};
use loket_server::proto::{
    EraseCaseRequest, EventStatusRequest, ListDenialsRequest, ListExportsRequest, ListProcessingRequest,
};
use serde_json::json;

use crate::cli::{AuditDenialsArgs, AuditExportsArgs, AuditProcessingArgs, EraseArgs, StatusArgs};
use crate::output;
use crate::publish::connected;

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    let reply = match client.event_status(EventStatusRequest { id: args.id.clone() }).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("status", &status)),
    };
    let recipients: Vec<_> = reply
        .recipients
        .iter()
        .map(|r| {
            let mut v = json!({"partner": r.partner, "state": r.state, "redacted": r.redacted});
            if !r.reason_code.is_empty() {
                v["reasonCode"] = json!(r.reason_code);
                v["reason"] = json!(r.reason);
            }
            if r.released_by != 0 {
                v["releasedBy"] = json!(r.released_by);
            }
            if !r.checks.is_empty() {
                v["checks"] =
                    r.checks.iter().map(|c| json!({"check": c.check, "held": c.held, "detail": c.detail})).collect();
            }
            v
        })
        .collect();
    println!(
        "{}",
        json!({"id": args.id, "sequence": reply.sequence, "type": reply.r#type, "subject": reply.subject,
               "consentGated": reply.consent_gated, "recipients": recipients})
    );
    Ok(ExitCode::SUCCESS)
}

fn since(text: Option<&str>) -> anyhow::Result<Option<prost_types::Timestamp>> {
    text.map(|t| parse_rfc3339(t).with_context(|| format!("--since {t:?} is not an RFC 3339 time"))).transpose()
}

pub async fn exports(args: AuditExportsArgs) -> anyhow::Result<ExitCode> {
    let since = since(args.since.as_deref())?;
    let mut client = connected(&args.client).await?;
    let reply = match client.list_exports(ListExportsRequest { since }).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("audit exports", &status)),
    };
    for e in &reply.exports {
        println!(
            "{}",
            json!({"startedAt": e.started_at.as_ref().map(rfc3339), "partner": e.partner, "mode": e.mode,
                   "filters": e.filters, "entries": e.entries, "state": e.state,
                   "finishedAt": e.finished_at.as_ref().map(rfc3339)})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `loket erase --case V --reason TEXT`.
pub async fn erase(args: EraseArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    let request = EraseCaseRequest { case: args.case.clone(), reason: args.reason.clone() };
    let reply = match client.erase_case(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("erase", &status)),
    };
    println!(
        "{}",
        json!({"erasure": reply.erasure, "case": args.case, "erasedAt": reply.erased_at.as_ref().map(rfc3339),
               "sequences": reply.sequences, "rejections": reply.rejections, "notice": reply.notice_sequence})
    );
    Ok(ExitCode::SUCCESS)
}

/// `loket audit processing --case V`.
pub async fn processing(args: AuditProcessingArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    let reply = match client.list_processing(ListProcessingRequest { case: args.case.clone() }).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("audit processing", &status)),
    };
    for r in &reply.records {
        println!(
            "{}",
            json!({"operation": r.operation, "channel": r.channel, "activity": r.activity, "partner": r.partner,
                   "type": r.event_type, "id": r.event_id, "sequence": r.sequence, "traceId": r.trace_id,
                   "spanId": r.span_id, "parentSpanId": r.parent_span_id, "status": r.status,
                   "startedAt": r.started_at.as_ref().map(rfc3339), "endedAt": r.ended_at.as_ref().map(rfc3339),
                   "subject": r.subject})
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn denials(args: AuditDenialsArgs) -> anyhow::Result<ExitCode> {
    let since = since(args.since.as_deref())?;
    let mut client = connected(&args.client).await?;
    let request = ListDenialsRequest {
        since,
        partner: args.of_partner.clone().unwrap_or_default(),
        limit: args.limit.unwrap_or(0),
    };
    let reply = match client.list_denials(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("audit denials", &status)),
    };
    for d in &reply.denials {
        println!(
            "{}",
            json!({"at": d.at.as_ref().map(rfc3339), "partner": d.partner, "kind": d.kind,
                   "type": d.event_type, "id": d.event_id, "source": d.source, "subject": d.subject,
                   "sequence": d.sequence, "reasonCode": d.reason_code, "reason": d.reason, "fields": d.fields})
        );
    }
    Ok(ExitCode::SUCCESS)
}
