//! The chain view: per handover kind the share of handovers that were ready, its trend per
//! ISO week, and per item and responsible partner how often it was met, missing, stale or
//! unmet; then the latest handovers that were not ready, each linking to its case
//! (pseudonymised) drill-down.

use std::collections::BTreeMap;
use std::fmt::Write;

use loket_quality::aggregate::parse_day;
use loket_quality::chain::{HandoverLine, HandoverReport};

use super::{colour, esc, head};

/// `YYYY-Www` of a `YYYY-MM-DD` day.
fn iso_week(day: &str) -> String {
    parse_day(day)
        .and_then(|d| time::Date::from_julian_day(d + 2_440_588).ok())
        .map(|d| {
            let (year, week, _) = d.to_iso_week_date();
            format!("{year:04}-W{week:02}")
        })
        .unwrap_or_else(|| day.to_owned())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(crate) fn render(report: &HandoverReport, recent: &[HandoverLine]) -> String {
    let mut html = String::new();
    head(&mut html, "handover readiness across the chain");
    if report.kinds.is_empty() {
        html.push_str("<p id=\"no-handovers\">No handovers yet.</p>");
    }
    html.push_str("<h2>Handovers</h2><table id=\"kinds\"><tr><th>handover</th><th>handovers</th><th>ready</th><th>share ready</th></tr>");
    for k in &report.kinds {
        let _ = write!(
            html,
            "<tr class=\"kind\" data-kind=\"{0}\" data-ready-share=\"{1:.4}\"><td>{0}</td><td class=\"num\">{2}</td>\
             <td class=\"num\">{3}</td><td class=\"cell\" style=\"background:{4}\">{5}</td></tr>",
            esc(&k.kind),
            k.ready_share,
            k.handovers,
            k.ready,
            colour(k.ready_share),
            pct(k.ready_share)
        );
    }
    html.push_str("</table>");
    for k in &report.kinds {
        let kind = esc(&k.kind);
        let _ = write!(html, "<section class=\"handover\" data-kind=\"{kind}\"><h2>{kind}</h2>");
        items(&mut html, report, &k.kind);
        trend(&mut html, report, &k.kind);
        html.push_str("</section>");
    }
    html.push_str("<h2>Latest handovers that were not ready</h2>");
    if recent.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<table id=\"recent\"><tr><th>when</th><th>handover</th><th>case</th><th>gaps</th></tr>");
        for line in recent {
            let when = loket_domain::time::rfc3339(line.at_micros).unwrap_or_default();
            let case = esc(&line.pseudonym);
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td><a class=\"case\" href=\"/quality/case/{case}\">{case}</a></td><td>{}</td></tr>",
                esc(&when),
                esc(&line.kind),
                esc(&line.gaps.join("; "))
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    html
}

fn items(html: &mut String, report: &HandoverReport, kind: &str) {
    let _ = write!(
        html,
        "<table class=\"items\" id=\"items-{}\"><tr><th>item</th><th>partner</th><th>due</th><th>met</th>\
         <th>missing</th><th>stale</th><th>unmet</th></tr>",
        esc(kind)
    );
    for i in report.items.iter().filter(|i| i.kind == kind) {
        let _ = write!(
            html,
            "<tr class=\"item\" data-item=\"{0}\" data-partner=\"{1}\" data-met-rate=\"{2:.4}\"><td>{0}</td><td>{1}</td>\
             <td class=\"num\">{3}</td><td class=\"cell\" style=\"background:{4}\">{5}</td><td class=\"num\">{6}</td>\
             <td class=\"num\">{7}</td><td class=\"num\">{8}</td></tr>",
            esc(&i.item),
            esc(&i.partner),
            i.met_rate,
            i.due,
            colour(i.met_rate),
            pct(i.met_rate),
            i.missing,
            i.stale,
            i.unmet
        );
    }
    html.push_str("</table>");
}

fn trend(html: &mut String, report: &HandoverReport, kind: &str) {
    let mut weeks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for d in report.days.iter().filter(|d| d.kind == kind) {
        let w = weeks.entry(iso_week(&d.day)).or_default();
        w.0 += d.handovers;
        w.1 += d.ready;
    }
    let _ = write!(
        html,
        "<table class=\"trend\" id=\"trend-{}\"><tr><th>week</th><th>handovers</th><th>share ready</th></tr>",
        esc(kind)
    );
    for (week, (handovers, ready)) in weeks {
        let share = if handovers == 0 { 0.0 } else { ready as f64 / handovers as f64 };
        let _ = write!(
            html,
            "<tr class=\"week\" data-week=\"{week}\" data-ready-share=\"{share:.4}\"><td>{week}</td><td class=\"num\">{handovers}</td>\
             <td><span class=\"bar\" style=\"width:{:.0}px\"></span> {}</td></tr>",
            share * 200.0,
            pct(share)
        );
    }
    html.push_str("</table>");
}

#[cfg(test)]
mod tests {
    #[test]
    fn weeks_are_iso_weeks() {
        assert_eq!(super::iso_week("2026-01-05"), "2026-W02");
        assert_eq!(super::iso_week("2027-01-01"), "2026-W53");
    }
}
