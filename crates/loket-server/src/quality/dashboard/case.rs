//! One case, pseudonymised, for the quality readers: the timeline of its events per
//! partner (type, sequence, time: no payload contents) and each handover with the items
//! that were missing, stale or unmet. The V-number never appears.

use std::collections::BTreeMap;
use std::fmt::Write;

use loket_domain::time::rfc3339;
use loket_quality::chain::CaseHistory;

use super::{esc, head};

pub(crate) fn render(pseudonym: &str, state: &CaseHistory) -> String {
    let mut html = String::new();
    head(&mut html, &format!("case {pseudonym}"));
    html.push_str("<p>The case is shown by its pseudonym; events without their contents.</p>");
    let mut per_partner: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &state.timeline {
        per_partner.entry(&e.source).or_default().push(format!(
            "<li class=\"event\" data-sequence=\"{}\" data-type=\"{}\">{} {} (#{})</li>",
            e.sequence,
            esc(&e.event_type),
            esc(&rfc3339(e.received_at_micros).unwrap_or_default()),
            esc(&e.event_type),
            e.sequence
        ));
    }
    html.push_str("<h2>Timeline per partner</h2><table id=\"timeline\"><tr><th>partner</th><th>events</th></tr>");
    for (partner, events) in &per_partner {
        let _ = write!(
            html,
            "<tr class=\"lane\" data-partner=\"{0}\"><th>{0}</th><td><ol>{1}</ol></td></tr>",
            esc(partner),
            events.concat()
        );
    }
    html.push_str("</table><h2>Handovers</h2>");
    if state.handovers.is_empty() {
        html.push_str("<p>No handover yet.</p>");
    }
    for h in &state.handovers {
        let _ = write!(
            html,
            "<section class=\"handover\" data-kind=\"{0}\" data-ready=\"{1}\" data-trigger=\"{2}\"><h3>{0} at #{2} ({3}): {4}</h3><ul>",
            esc(&h.kind),
            h.ready(),
            h.trigger_sequence,
            esc(&rfc3339(h.at_micros).unwrap_or_default()),
            if h.ready() { "ready" } else { "not ready" }
        );
        for i in &h.items {
            let _ = write!(
                html,
                "<li class=\"item\" data-item=\"{0}\" data-partner=\"{1}\" data-status=\"{2}\">{0} from {1}: {2}</li>",
                esc(&i.item),
                esc(&i.partner),
                i.status.as_str()
            );
        }
        html.push_str("</ul></section>");
    }
    html.push_str("</body></html>");
    html
}
