//! The partner scorecard: per partner the quality dimensions side by side (validity,
//! completeness, timeliness p50/p90, uniqueness, readiness), and the chain median of each,
//! so a partner sees where it stands.

use std::fmt::Write;

use loket_quality::dimensions::{median, DimensionFigure};

use super::{colour, esc, head};

/// A dimension: its name, how to read it off a figure, and whether higher is better.
type Dimension = (&'static str, fn(&DimensionFigure) -> Option<f64>, bool);

const DIMENSIONS: &[Dimension] = &[
    ("validity", |d| (d.published > 0).then_some(d.validity), true),
    ("completeness", |d| (d.accepted > 0).then_some(d.mean_completeness), true),
    ("timeliness-p50", |d| d.timeliness_p50_seconds, false),
    ("timeliness-p90", |d| d.timeliness_p90_seconds, false),
    ("uniqueness", |d| (d.accepted + d.duplicates > 0).then_some(d.uniqueness), true),
    ("readiness", |d| d.readiness, true),
];

fn show(name: &str, value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if name.starts_with("timeliness") => format!("{v:.0} s"),
        Some(v) => format!("{:.1}%", v * 100.0),
    }
}

/// `partners`: one figure per partner over all its types.
pub(crate) fn render(partners: &[DimensionFigure]) -> String {
    let mut html = String::new();
    head(&mut html, "partner scorecard");
    html.push_str("<p>Each dimension per partner beside the chain median (the median over partners). Timeliness is the delay from an event's own time to its receipt.</p>");
    html.push_str("<table id=\"scorecard\"><tr><th>partner</th>");
    for (name, _, _) in DIMENSIONS {
        let _ = write!(html, "<th>{name}</th>");
    }
    html.push_str("</tr>");
    let medians: Vec<Option<f64>> =
        DIMENSIONS.iter().map(|(_, get, _)| median(partners.iter().filter_map(get).collect())).collect();
    for p in partners {
        let _ = write!(html, "<tr class=\"partner\" data-partner=\"{0}\"><th>{0}</th>", esc(&p.partner));
        for ((name, get, higher_is_better), median) in DIMENSIONS.iter().zip(&medians) {
            let value = get(p);
            // Green at or better than the chain median, red where it falls behind.
            let style = match (value, median) {
                (Some(v), Some(m)) if (v >= *m) == *higher_is_better || v == *m => {
                    format!(" style=\"background:{}\"", colour(1.0))
                }
                (Some(_), Some(_)) => format!(" style=\"background:{}\"", colour(0.2)),
                _ => String::new(),
            };
            let data = value.map(|v| format!(" data-value=\"{v:.4}\"")).unwrap_or_default();
            let _ =
                write!(html, "<td class=\"cell\" data-dimension=\"{name}\"{data}{style}>{}</td>", show(name, value));
        }
        html.push_str("</tr>");
    }
    html.push_str("<tr id=\"chain-median\"><th>chain median</th>");
    for ((name, _, _), median) in DIMENSIONS.iter().zip(&medians) {
        let data = median.map(|v| format!(" data-value=\"{v:.4}\"")).unwrap_or_default();
        let _ = write!(html, "<td class=\"cell\" data-dimension=\"{name}\"{data}>{}</td>", show(name, *median));
    }
    html.push_str("</tr></table></body></html>");
    html
}
