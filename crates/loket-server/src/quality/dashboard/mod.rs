//! The quality dashboard: server-rendered HTML pages with inline CSS and SVG, so that they
//! work on closed networks (no script, font or stylesheet from elsewhere). This page: fill
//! rates, completeness trend and failed rules; `chain.rs`: handover readiness across the
//! chain; `scorecard.rs`: the dimensions per partner beside the chain median; `case.rs`:
//! one pseudonymised case's timeline and handovers.

mod case;
mod chain;
mod scorecard;

use std::collections::BTreeMap;
use std::fmt::Write;

use loket_quality::Report;

pub(crate) use case::render as render_case;
pub(crate) use chain::render as render_chain;
pub(crate) use scorecard::render as render_scorecard;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Red (0) through amber to green (1).
fn colour(rate: f64) -> String {
    format!("hsl({:.0}, 70%, 55%)", rate.clamp(0.0, 1.0) * 120.0)
}

/// The start of every page: title, style and the links between the pages.
fn head(html: &mut String, title: &str) {
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>loket {}</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/quality\">fields</a> · \
         <a href=\"/quality/chain\">chain</a> · <a href=\"/quality/scorecard\">scorecard</a></nav><h1>loket: {}</h1>",
        esc(title),
        esc(title)
    );
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .5em;font-size:.85em}\
td.cell{text-align:center;min-width:4em}td.empty{background:#eee}\
.legend span{display:inline-block;padding:.2em .6em;margin-right:.2em}\
svg{background:#fafafa;border:1px solid #ddd}nav{font-size:.9em}td.num{text-align:right}\
.bar{display:inline-block;height:.7em;background:#4a7}";

/// The page for `report` (all partners, all time unless the caller filtered it).
pub fn render(report: &Report, title_period: &str) -> String {
    let mut html = String::new();
    head(&mut html, &format!("chain-wide quality ({title_period})"));
    html.push_str("<p class=\"legend\">Fill rate: <span style=\"background:hsl(0,70%,55%)\">0%</span>");
    html.push_str("<span style=\"background:hsl(60,70%,55%)\">50%</span>");
    html.push_str("<span style=\"background:hsl(120,70%,55%)\">100%</span></p>");
    heatmaps(&mut html, report);
    trend(&mut html, report);
    rules(&mut html, report);
    html.push_str("</body></html>");
    html
}

fn heatmaps(html: &mut String, report: &Report) {
    html.push_str("<h2>Fill rate per partner and field</h2>");
    if report.fields.is_empty() {
        html.push_str("<p id=\"no-figures\">No accepted events yet.</p>");
    }
    // type -> (fields, partner -> field -> (rate, filled, seen))
    type Cells = BTreeMap<String, BTreeMap<String, (f64, u64, u64)>>;
    let mut by_type: BTreeMap<&str, (Vec<&str>, Cells)> = BTreeMap::new();
    for f in &report.fields {
        let (fields, cells) = by_type.entry(&f.event_type).or_default();
        if !fields.contains(&f.field.as_str()) {
            fields.push(&f.field);
        }
        cells.entry(f.partner.clone()).or_default().insert(f.field.clone(), (f.fill_rate, f.filled, f.seen));
    }
    for (event_type, (mut fields, cells)) in by_type {
        fields.sort_unstable();
        let t = esc(event_type);
        let _ = write!(html, "<section class=\"type\" data-type=\"{t}\"><h3>{t}</h3><table class=\"heatmap\" id=\"heatmap-{t}\"><tr><th>partner</th>");
        for field in &fields {
            let _ = write!(html, "<th>{}</th>", esc(field));
        }
        html.push_str("</tr>");
        for (partner, row) in &cells {
            let p = esc(partner);
            let _ = write!(html, "<tr><th>{p}</th>");
            for field in &fields {
                match row.get(*field) {
                    Some((rate, filled, seen)) => {
                        let _ = write!(
                            html,
                            "<td class=\"cell\" data-partner=\"{p}\" data-field=\"{}\" data-fill=\"{rate:.4}\" \
                             title=\"{filled} of {seen}\" style=\"background:{}\">{:.1}%</td>",
                            esc(field),
                            colour(*rate),
                            rate * 100.0
                        );
                    }
                    None => html.push_str("<td class=\"empty\"></td>"),
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</table></section>");
    }
}

fn trend(html: &mut String, report: &Report) {
    html.push_str("<h2>Mean completeness per partner per day</h2>");
    // partner -> day -> (events, completeness sum)
    let mut series: BTreeMap<&str, BTreeMap<&str, (u64, f64)>> = BTreeMap::new();
    let mut days: Vec<&str> = Vec::new();
    for d in &report.days {
        let point = series.entry(&d.partner).or_default().entry(&d.day).or_default();
        point.0 += d.events;
        point.1 += d.mean_completeness * d.events as f64;
        days.push(&d.day);
    }
    days.sort_unstable();
    days.dedup();
    if days.is_empty() {
        html.push_str("<p>No days with events yet.</p>");
        return;
    }
    let (w, h, pad) = (640.0, 220.0, 30.0);
    let x =
        |i: usize| if days.len() == 1 { w / 2.0 } else { pad + i as f64 * (w - 2.0 * pad) / (days.len() - 1) as f64 };
    let y = |v: f64| h - pad - v * (h - 2.0 * pad);
    let _ = write!(html, "<svg id=\"trend\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">");
    let _ = write!(html, "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>", y(0.0), w - pad, y(0.0));
    let _ = write!(
        html,
        "<text x=\"2\" y=\"{}\" font-size=\"10\">100%</text><text x=\"2\" y=\"{}\" font-size=\"10\">0%</text>",
        y(1.0) + 4.0,
        y(0.0) + 4.0
    );
    for (n, (partner, points)) in series.iter().enumerate() {
        let hue = (n * 67) % 360;
        let values: Vec<(f64, f64, &str, f64)> = days
            .iter()
            .enumerate()
            .filter_map(|(i, day)| points.get(day).map(|(e, s)| (x(i), y(s / *e as f64), *day, s / *e as f64)))
            .collect();
        let coords: Vec<String> = values.iter().map(|(px, py, _, _)| format!("{px:.1},{py:.1}")).collect();
        let _ = write!(
            html,
            "<polyline class=\"series\" data-partner=\"{}\" fill=\"none\" stroke=\"hsl({hue},60%,40%)\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            esc(partner),
            coords.join(" "),
            esc(partner)
        );
        // Points as well as the line, so that a single day shows too.
        for (px, py, day, value) in values {
            let _ = write!(
                html,
                "<circle class=\"point\" data-partner=\"{}\" data-day=\"{day}\" data-completeness=\"{value:.4}\" \
                 cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"hsl({hue},60%,40%)\"><title>{} {day}: {:.1}%</title></circle>",
                esc(partner),
                esc(partner),
                value * 100.0
            );
        }
    }
    html.push_str("</svg><p class=\"legend\">");
    for (n, partner) in series.keys().enumerate() {
        let _ = write!(html, "<span style=\"color:hsl({},60%,40%)\">&#9632; {}</span>", (n * 67) % 360, esc(partner));
    }
    let _ = write!(html, "</p><p>Days: {} to {}</p>", days[0], days[days.len() - 1]);
}

fn rules(html: &mut String, report: &Report) {
    html.push_str("<h2>Most-failed quality rules</h2>");
    let failed = report.most_failed_rules();
    if failed.is_empty() {
        html.push_str("<p>No rule failed.</p>");
        return;
    }
    html.push_str("<table id=\"rules\"><tr><th>rule</th><th>failures</th></tr>");
    for (rule, count) in failed {
        let _ = write!(html, "<tr><td class=\"rule\">{}</td><td>{count}</td></tr>", esc(&rule));
    }
    html.push_str("</table>");
}
