//! The page's expectations: every phase's, with its verdict and the measured value.

use std::fmt::Write as _;

use crate::report::format::{self, micros, signed_thousands, Digits};
use crate::report::markup::Escaped;
use crate::report::{ExpectationResult, RunReport};

pub(super) fn section(out: &mut String, r: &RunReport) {
    out.push_str("<section id=\"expectations\"><h2>Expectations</h2>\n");
    for (i, p) in r.phases.iter().enumerate() {
        let _ =
            writeln!(out, "<h3>{}. {} <span class=\"kind\">{}</span></h3>", i + 1, Escaped(&p.name), Escaped(&p.kind));
        if p.expectations.is_empty() {
            out.push_str("<p class=\"hint\">No expectations.</p>\n");
            continue;
        }
        out.push_str("<table class=\"expect\">\n<tbody>\n");
        for e in &p.expectations {
            let (class, word) = match (e.deferred, e.passed) {
                (true, _) => ("deferred", "SHARD"),
                (false, true) => ("pass", "PASS"),
                (false, false) => ("fail", "FAIL"),
            };
            let implicit = if e.implicit { " <span class=\"hint\">(default)</span>" } else { "" };
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td><span class=\"badge {class}\">{word}</span></td><td><code>{}</code>{implicit}</td>\
                 <td>{}</td></tr>",
                Escaped(&e.expr),
                Escaped(&if e.actual.is_some() { format!("actual {}", actual(e)) } else { actual(e) }),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn actual(e: &ExpectationResult) -> String {
    match e.actual {
        None if e.reason.is_some() => format!("unobserved: {}", e.reason.as_deref().unwrap_or_default()),
        None => "not measured".to_string(),
        Some(v) if e.unit == "us" => micros(v.max(0.0) as u64),
        Some(v) if e.unit == "per_s" => format!("{}/s", format::rate(v, Digits::Grouped)),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => signed_thousands(v as i64),
        Some(v) => format!("{v}"),
    }
}
