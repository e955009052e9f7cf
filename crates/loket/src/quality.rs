//! `loket quality` (the report) and `loket quality rebuild`.

use std::collections::HashMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::{QualityReport, QualityReportRequest};
use loket_server::Config;
use serde_json::json;

use crate::cli::{QualityReportArgs, ReportFormat, ReportView, ServeArgs};
use crate::output;

pub fn rebuild(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(args.config.as_deref(), &env)?;
    let read = loket_server::rebuild_quality(&config).with_context(|| {
        format!("cannot rebuild the quality figures in {} (is the gateway stopped?)", config.data_dir.display())
    })?;
    println!(
        "rebuilt the quality figures from {read} journalled events in {}; refusal counts are not in the journal and were kept",
        config.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn report(args: QualityReportArgs) -> anyhow::Result<ExitCode> {
    let Some(partner) = args.partner.clone() else {
        anyhow::bail!("--as PARTNER (or LOKET_PARTNER) is required to read a quality report");
    };
    let options = ClientOptions { server: args.server.clone(), certs: args.certs.clone(), partner };
    let mut client = connect(&options).await.with_context(|| format!("cannot connect to {}", args.server))?;
    let request = QualityReportRequest {
        partners: args.partners.clone(),
        r#type: args.event_type.clone().unwrap_or_default(),
        from_day: args.from.clone().unwrap_or_default(),
        to_day: args.to.clone().unwrap_or_default(),
    };
    let report = match client.get_quality_report(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("quality report", &status)),
    };
    let format =
        args.format.unwrap_or(if std::io::stdout().is_terminal() { ReportFormat::Table } else { ReportFormat::Json });
    let text = match format {
        ReportFormat::Json => format!("{:#}\n", to_json(&report)),
        ReportFormat::Csv => csv(&report, args.view.unwrap_or(ReportView::Fields)),
        ReportFormat::Table => match args.view {
            Some(ReportView::Handovers) => format!("{}{}", kinds_table(&report), table(&report, ReportView::Handovers)),
            Some(view) => table(&report, view),
            None => format!("{}\n{}", table(&report, ReportView::Types), table(&report, ReportView::Fields)),
        },
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn to_json(r: &QualityReport) -> serde_json::Value {
    json!({
        "types": r.types.iter().map(|t| json!({
            "partner": t.partner, "type": t.r#type, "events": t.events,
            "meanCompleteness": t.mean_completeness, "rejected": t.rejected,
            "rejectionRate": t.rejection_rate,
            "rejections": t.rejections.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "rulesFailed": t.rules_failed.iter().collect::<std::collections::BTreeMap<_, _>>(),
        })).collect::<Vec<_>>(),
        "fields": r.fields.iter().map(|f| json!({
            "partner": f.partner, "type": f.r#type, "field": f.field,
            "seen": f.seen, "filled": f.filled, "fillRate": f.fill_rate,
        })).collect::<Vec<_>>(),
        "days": r.days.iter().map(|d| json!({
            "day": d.day, "partner": d.partner, "type": d.r#type,
            "events": d.events, "meanCompleteness": d.mean_completeness,
        })).collect::<Vec<_>>(),
        "dimensions": r.dimensions.iter().map(|d| json!({
            "partner": d.partner, "type": d.r#type, "published": d.published, "accepted": d.accepted,
            "validity": d.validity, "meanCompleteness": d.mean_completeness, "timed": d.timed,
            "timelinessP50Seconds": d.timeliness_p50_seconds, "timelinessP90Seconds": d.timeliness_p90_seconds,
            "duplicates": d.duplicates, "uniqueness": d.uniqueness, "handoverItemsDue": d.handover_items_due,
            "handoverItemsMet": d.handover_items_met, "readiness": d.readiness,
        })).collect::<Vec<_>>(),
        "handoverItems": r.handover_items.iter().map(|i| json!({
            "handover": i.handover, "item": i.item, "partner": i.partner, "type": i.r#type, "due": i.due,
            "met": i.met, "missing": i.missing, "stale": i.stale, "unmet": i.unmet, "metRate": i.met_rate,
        })).collect::<Vec<_>>(),
        "handoverKinds": r.handover_kinds.iter().map(|k| json!({
            "handover": k.handover, "handovers": k.handovers, "ready": k.ready, "readyShare": k.ready_share,
        })).collect::<Vec<_>>(),
        "handoverDays": r.handover_days.iter().map(|d| json!({
            "day": d.day, "handover": d.handover, "handovers": d.handovers, "ready": d.ready,
        })).collect::<Vec<_>>(),
    })
}

fn rows(r: &QualityReport, view: ReportView) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let pct = |x: f64| format!("{:.1}", x * 100.0);
    let maybe = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map(f).unwrap_or_else(|| "-".to_owned());
    let counts = |m: &HashMap<String, u64>| {
        let mut v: Vec<_> = m.iter().map(|(k, n)| format!("{k}={n}")).collect();
        v.sort();
        v.join(" ")
    };
    match view {
        ReportView::Fields => (
            vec!["partner", "type", "field", "seen", "filled", "fill_rate_pct"],
            r.fields
                .iter()
                .map(|f| {
                    vec![
                        f.partner.clone(),
                        f.r#type.clone(),
                        f.field.clone(),
                        f.seen.to_string(),
                        f.filled.to_string(),
                        pct(f.fill_rate),
                    ]
                })
                .collect(),
        ),
        ReportView::Types => (
            vec!["partner", "type", "events", "completeness_pct", "rejected", "rejections", "rules_failed"],
            r.types
                .iter()
                .map(|t| {
                    vec![
                        t.partner.clone(),
                        t.r#type.clone(),
                        t.events.to_string(),
                        pct(t.mean_completeness),
                        t.rejected.to_string(),
                        counts(&t.rejections),
                        counts(&t.rules_failed),
                    ]
                })
                .collect(),
        ),
        ReportView::Handovers => (
            vec!["handover", "item", "partner", "type", "due", "met", "missing", "stale", "unmet", "met_pct"],
            r.handover_items
                .iter()
                .map(|i| {
                    vec![
                        i.handover.clone(),
                        i.item.clone(),
                        i.partner.clone(),
                        i.r#type.clone(),
                        i.due.to_string(),
                        i.met.to_string(),
                        i.missing.to_string(),
                        i.stale.to_string(),
                        i.unmet.to_string(),
                        pct(i.met_rate),
                    ]
                })
                .collect(),
        ),
        ReportView::Dimensions => (
            vec![
                "partner",
                "type",
                "validity_pct",
                "completeness_pct",
                "timeliness_p50_s",
                "timeliness_p90_s",
                "uniqueness_pct",
                "readiness_pct",
            ],
            r.dimensions
                .iter()
                .map(|d| {
                    vec![
                        d.partner.clone(),
                        d.r#type.clone(),
                        if d.published > 0 { pct(d.validity) } else { "-".to_owned() },
                        if d.accepted > 0 { pct(d.mean_completeness) } else { "-".to_owned() },
                        maybe(d.timeliness_p50_seconds, &|s| format!("{s:.0}")),
                        maybe(d.timeliness_p90_seconds, &|s| format!("{s:.0}")),
                        if d.accepted + d.duplicates > 0 { pct(d.uniqueness) } else { "-".to_owned() },
                        maybe(d.readiness, &pct),
                    ]
                })
                .collect(),
        ),
        ReportView::Days => (
            vec!["day", "partner", "type", "events", "completeness_pct"],
            r.days
                .iter()
                .map(|d| {
                    vec![
                        d.day.clone(),
                        d.partner.clone(),
                        d.r#type.clone(),
                        d.events.to_string(),
                        pct(d.mean_completeness),
                    ]
                })
                .collect(),
        ),
    }
}

/// Per handover kind, the share that was ready (a quality reader's report of everyone).
fn kinds_table(r: &QualityReport) -> String {
    let mut out = String::new();
    for k in &r.handover_kinds {
        let _ = writeln!(
            out,
            "{}: {} of {} handovers ready ({:.1}%)",
            k.handover,
            k.ready,
            k.handovers,
            k.ready_share * 100.0
        );
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn table(r: &QualityReport, view: ReportView) -> String {
    let (header, rows) = rows(r, view);
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>().iter().map(String::as_str).collect(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

fn csv(r: &QualityReport, view: ReportView) -> String {
    let (header, rows) = rows(r, view);
    let mut out = header.join(",") + "\n";
    for row in rows {
        out += &row.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}
