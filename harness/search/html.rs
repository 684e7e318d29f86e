//! The search as one self-contained HTML page: the knee chart (the step's handshake
//! p99, or its errors when no objective bounds a latency, against its level, the objective's line, the holding steps filled, the breaching
//! ones marked red, unknown ones grey) in inline SVG, and the steps' table.

use std::fmt::Write;

use crate::report::markup::escape;

use super::report::{figures_text, level_text, SearchReport};

const W: f64 = 640.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// What the chart plots: the handshake p99 (ms) when an objective bounds a handshake or
/// connect latency, else the errors; and the objective's threshold in that unit.
struct Figure {
    name: &'static str,
    latency: bool,
    line: Option<f64>,
}

fn figure(report: &SearchReport) -> Figure {
    let parsed = |o: &String| {
        let (name, cond) = o.split_once(' ')?;
        let e = crate::expect::Expectation::parse(name, &toml::Value::String(cond.into())).ok()?;
        Some((name.to_string(), e.value))
    };
    let objectives: Vec<(String, f64)> = report.objectives.iter().filter_map(parsed).collect();
    if let Some((_, us)) = objectives.iter().find(|(n, _)| n == "handshake_p99" || n == "connect_p99") {
        return Figure { name: "handshake p99 (ms)", latency: true, line: Some(us / 1000.0) };
    }
    if objectives.iter().any(|(n, _)| n.starts_with("handshake_") || n.starts_with("connect_")) {
        return Figure { name: "handshake p99 (ms)", latency: true, line: None };
    }
    let errors = objectives.iter().find(|(n, _)| n == "errors").map(|(_, v)| *v);
    Figure { name: "errors", latency: false, line: errors }
}

fn chart(report: &SearchReport) -> String {
    let fig = figure(report);
    let value = |s: &super::StepReport| match fig.latency {
        true => s.figures.handshake_p99_us.map(|u| u as f64 / 1000.0),
        false => Some(s.figures.errors as f64),
    };
    let points: Vec<(f64, Option<f64>, &str)> =
        report.steps.iter().map(|s| (s.level, value(s), s.verdict.as_str())).collect();
    let line = fig.line;
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().filter_map(|p| p.1).chain(line).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| PAD + v / max_x * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / max_y * (H - 2.0 * PAD);
    let mut svg = format!("<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">");
    let _ = write!(svg, "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/>", H - PAD, W - PAD);
    let _ = write!(svg, "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#888\"/>", H - PAD);
    let _ =
        write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", W - PAD, H - 12.0, escape(&report.unit));
    let _ = write!(svg, "<text x=\"4\" y=\"{}\">{}, top of the axis {:.1}</text>", PAD - 20.0, fig.name, max_y);
    if let Some(limit) = line {
        let _ = write!(
            svg,
            "<line class=\"objective\" x1=\"{PAD}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#c60\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"#c60\">objective {3}{4}</text>",
            y(limit),
            W - PAD,
            y(limit) - 4.0,
            limit,
            if fig.latency { " ms" } else { "" }
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
            // Left of a point near the right edge, so the label stays inside.
            let (dx, anchor) = if x(*level) > W - 2.0 * PAD { (-7.0, "end") } else { (7.0, "start") };
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#d22\">✕ breach</text>",
                x(*level) + dx,
                cy - 7.0
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::judge::StepFigures;
    use crate::search::StepReport;

    fn step(index: u32, level: f64, p99_us: u64, errors: u64, verdict: &str) -> StepReport {
        StepReport {
            index,
            level,
            verdict: verdict.into(),
            why: None,
            invalid: None,
            figures: StepFigures { handshake_p99_us: Some(p99_us), errors, planned: 100, ..Default::default() },
            objectives: Vec::new(),
            duration_ms: 1,
        }
    }

    fn report(objectives: &[&str]) -> SearchReport {
        SearchReport {
            schema: "sockcap.search/1".into(),
            scenario: "s <1>".into(),
            mode: "rate".into(),
            unit: "connects/s".into(),
            objectives: objectives.iter().map(|o| o.to_string()).collect(),
            steps: vec![step(1, 1000.0, 5_000, 0, "holds"), step(2, 2000.0, 300_000, 4, "breaks")],
            verdict: None,
            duration_ms: 2,
        }
    }

    #[test]
    fn the_knee_chart_draws_the_objective_and_marks_the_breach() {
        let page = render(&report(&["handshake_p99 < 100ms", "errors == 0"]));
        assert!(page.contains("objective 100 ms") && page.contains("handshake p99 (ms)"), "{page}");
        assert!(page.contains("class=\"breaks\"") && page.contains("breach") && page.contains("s &lt;1&gt;"));
        // Without a latency objective it plots the errors against their objective.
        let page = render(&report(&["errors == 0"]));
        assert!(page.contains(">errors, top of the axis") && page.contains("objective 0"), "{page}");
    }
}
