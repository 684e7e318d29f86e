//! The search as one self-contained HTML page: the knee chart (the step's handshake
//! p99 against its level, the objective's line, the holding steps filled, the breaching
//! ones marked red, unknown ones grey) in inline SVG, and the steps' table.

use std::fmt::Write;

use crate::report::markup::escape;

use super::report::{figures_text, level_text, SearchReport};

const W: f64 = 640.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// The objective's threshold on the handshake p99, µs, when one is written.
fn p99_objective_us(report: &SearchReport) -> Option<f64> {
    report.objectives.iter().find_map(|o| {
        let (name, cond) = o.split_once(' ')?;
        let e = crate::expect::Expectation::parse(name, &toml::Value::String(cond.into())).ok()?;
        (name == "handshake_p99" || name == "connect_p99").then_some(e.value)
    })
}

fn chart(report: &SearchReport) -> String {
    let points: Vec<(f64, Option<f64>, &str)> = report
        .steps
        .iter()
        .map(|s| (s.level, s.figures.handshake_p99_us.map(|u| u as f64), s.verdict.as_str()))
        .collect();
    let line = p99_objective_us(report);
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().filter_map(|p| p.1).chain(line).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| PAD + v / max_x * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / max_y * (H - 2.0 * PAD);
    let mut svg = format!("<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">");
    let _ = write!(svg, "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/>", H - PAD, W - PAD);
    let _ = write!(svg, "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#888\"/>", H - PAD);
    let _ =
        write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", W - PAD, H - 12.0, escape(&report.unit));
    let _ = write!(svg, "<text x=\"4\" y=\"{}\">handshake p99 (ms), max {:.0}</text>", PAD - 20.0, max_y / 1000.0);
    if let Some(limit) = line {
        let _ = write!(
            svg,
            "<line class=\"objective\" x1=\"{PAD}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#c60\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"#c60\">objective {3:.0} ms</text>",
            y(limit),
            W - PAD,
            y(limit) - 4.0,
            limit / 1000.0
        );
    }
    for (level, p99, verdict) in &points {
        let colour = match *verdict {
            "holds" => "#2a7",
            "breaks" => "#d22",
            _ => "#999",
        };
        let cy = p99.map_or(PAD, y);
        let _ = write!(
            svg,
            "<circle class=\"{verdict}\" cx=\"{:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"{colour}\"><title>{} {}: {verdict}</title></circle>",
            x(*level),
            level_text(*level),
            escape(&report.unit)
        );
        if *verdict == "breaks" {
            let _ =
                write!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d22\">✕ breach</text>", x(*level) + 7.0, cy - 7.0);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The page.
pub fn render(report: &SearchReport) -> String {
    let mut page = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>sockcap search</title>");
    page.push_str(
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style></head><body>",
    );
    let _ = write!(page, "<h1>sockcap search: {}</h1>", escape(&report.scenario));
    let verdict = report.verdict.as_ref().map_or("(no verdict: the search did not end)", |v| v.text.as_str());
    let _ = write!(page, "<p class=\"verdict\">{}</p>", escape(verdict));
    let _ = write!(page, "<p>objectives: {}</p>", escape(&report.objectives.join(", ")));
    page.push_str(&chart(report));
    page.push_str("<table><tr><th>step</th><th>level</th><th>figures</th><th>verdict</th></tr>");
    for s in &report.steps {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
            s.index,
            level_text(s.level),
            escape(&report.unit),
            escape(&figures_text(&s.figures)),
            escape(&s.verdict)
        );
    }
    page.push_str("</table></body></html>\n");
    page
}
