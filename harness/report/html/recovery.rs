//! The page's recovery table, beside the latencies: per phase with a loss, the
//! connections lost and back, their recovery times, the peak reconnect rate, when the
//! last came back, and the refused reconnect attempts by kind.

use std::fmt::Write as _;

use crate::expect::LatencyKind;
use crate::report::format::{micros, seconds, thousands};
use crate::report::markup::Escaped;
use crate::report::{unobserved, RunReport};

pub(super) fn section(out: &mut String, r: &RunReport) {
    let rows: Vec<_> = r.phases.iter().filter_map(|p| p.recovery.as_ref().map(|rec| (p, rec))).collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"recovery\"><h2>Recovery</h2>\n\
         <p class=\"hint\">Connections lost without sockcap closing them and their way back under \
         <code>[client] reconnect</code>: each one's time from its loss to its CONNACK again (TCP: its \
         connect), counted in the phase it came back in; the peak is the most reconnects in one second.</p>\n\
         <div class=\"scroll\"><table class=\"num\">\n\
         <thead><tr><th class=\"l\">phase</th><th>lost</th><th>back</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>max</th><th>peak /s</th><th>last back at</th><th class=\"l\">refused attempts</th></tr></thead>\n<tbody>\n",
    );
    for (p, rec) in rows {
        let t = &rec.recovery_us;
        let unobserved = p.unobserved.get(unobserved::latency(LatencyKind::Recovery));
        let times = match unobserved {
            Some(why) => format!("<td colspan=\"4\" class=\"bad\">unobserved: {}</td>", Escaped(why)),
            None if t.count == 0 => "<td colspan=\"4\">none back</td>".to_string(),
            None => [t.p50, t.p90, t.p99, t.max].iter().map(|us| format!("<td>{}</td>", micros(*us))).collect(),
        };
        let back_class = if rec.recovered < rec.lost { "bad" } else { "" };
        let last = rec.last_back_ms.map_or("–".to_string(), seconds);
        let refused: Vec<String> = rec.refusals.iter().map(|(k, n)| format!("{k} {}", thousands(*n))).collect();
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"{back_class}\">{}</td>{times}<td>{}</td><td>{last}</td>\
             <td class=\"l\">{}</td></tr>",
            Escaped(&p.name),
            thousands(rec.lost),
            thousands(rec.recovered),
            thousands(rec.peak_reconnect_rate_per_s),
            Escaped(&refused.join(", ")),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}
