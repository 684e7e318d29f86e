//! `sockcap compare BASELINE.json CURRENT.json`: read two reports, compare them
//! ([`crate::report::compare`]), print a table per phase, and exit 1 when a figure
//! passed its regression limit (0 otherwise; 2 when a file cannot be used).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::console::Console;
use super::failure::{exit, Failure};
use crate::printable::printable;
use crate::report::compare::{self, Better, Comparison, Figure, Presence, RegressionLimits, Verdict, Which};
use crate::report::format::micros;
use crate::report::RunReport;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The reference report (`sockcap run --json`), e.g. from the main branch.
    pub baseline: PathBuf,
    /// The report to judge against it.
    pub current: PathBuf,
    /// Limits per metric, as a percentage of the baseline, an amount, or both:
    /// `connect_p99=10%,established=1%,errors=0,handshake_p99=20%+1ms`. Replaces the defaults
    /// (connect_p99=50%+5ms, handshake_p99=50%+5ms, connected=0, established=0, errors=0, drops=0).
    #[arg(long, value_name = "METRIC=LIMIT,...")]
    pub max_regression: Option<RegressionLimits>,
}

pub fn compare(args: CompareArgs) -> Result<u8, Failure> {
    let baseline = load(&args.baseline, Which::Baseline)?;
    let current = load(&args.current, Which::Current)?;
    let limits = args.max_regression.unwrap_or_else(RegressionLimits::defaults);
    let comparison = compare::compare(&baseline, &current, &limits).map_err(|e| {
        let path = match e.which() {
            Which::Baseline => &args.baseline,
            Which::Current => &args.current,
        };
        Failure::bad_input(
            anyhow::Error::new(e)
                .context(format!("{} cannot be compared; write it again with `sockcap run --json`", path.display())),
        )
    })?;
    Console::stdout().print(&render(&args.baseline, &baseline, &args.current, &current, &comparison))?;
    Ok(if comparison.passed() { exit::PASSED } else { exit::FAILED })
}

/// Read a report, checking its schema before its shape so an old or foreign file gets
/// a message that says so.
fn load(path: &Path, which: Which) -> Result<RunReport, Failure> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading the {which} report {}", path.display()))
        .map_err(Failure::bad_input)?;
    crate::report::json::parse(&text, &path.display().to_string()).map_err(Failure::bad_input)
}

/// The comparison as text: a header, a table per phase, the verdict.
fn render(base_path: &Path, base: &RunReport, cur_path: &Path, cur: &RunReport, c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "baseline  {} ({}, {}, sockcap {})",
        printable(&base_path.display().to_string()),
        printable(&base.scenario.name),
        base.started_at,
        base.sockcap_version
    );
    let _ = writeln!(
        out,
        "current   {} ({}, {}, sockcap {})",
        printable(&cur_path.display().to_string()),
        printable(&cur.scenario.name),
        cur.started_at,
        cur.sockcap_version
    );
    let _ = writeln!(out, "limits    {}", c.limits);
    for note in &c.notes {
        let _ = writeln!(out, "note: {}", printable(note));
    }
    for phase in &c.phases {
        out.push('\n');
        let presence = match phase.presence {
            Presence::Both => "",
            Presence::BaselineOnly => ": MISSING from the current report",
            Presence::CurrentOnly => ": new, not in the baseline",
        };
        let _ = writeln!(out, "phase {} ({}){presence}", printable(&phase.name), phase.kind);
        let _ = writeln!(
            out,
            "  {:<24}{:>12}{:>12}{:>12}{:>10}  {:<12}verdict",
            "figure", "baseline", "current", "change", "%", "limit"
        );
        for f in &phase.figures {
            let _ = writeln!(
                out,
                "  {:<24}{:>12}{:>12}{:>12}{:>10}  {:<12}{}",
                printable(&f.name),
                value(f, f.baseline, &f.baseline_unobserved),
                value(f, f.current, &f.current_unobserved),
                change(f),
                percent(f),
                limit(f),
                verdict(f)
            );
        }
    }
    out.push('\n');
    let regressions: Vec<_> = c.regressions().collect();
    let missing: Vec<_> = c.missing_phases().collect();
    let judged = c.phases.iter().flat_map(|p| &p.figures).filter(|f| f.limit.is_some()).count();
    if c.passed() {
        let _ = writeln!(out, "PASSED: no figure passed its limit ({judged} judged)");
    } else {
        let _ = writeln!(
            out,
            "REGRESSED: {} of {judged} judged figures passed their limits{}",
            regressions.len(),
            if missing.is_empty() { String::new() } else { format!(", {} phases missing", missing.len()) }
        );
        for (phase, f) in regressions {
            let detail = match (f.verdict, &f.current_unobserved) {
                (Verdict::NotMeasured, Some(why)) => format!("unobserved in the current report: {why}"),
                (Verdict::NotMeasured, None) => "not measured in the current report".to_string(),
                _ => format!(
                    "{} → {} ({}{}), limit {}",
                    value(f, f.baseline, &None),
                    value(f, f.current, &None),
                    change(f),
                    match f.relative_change() {
                        Some(_) => format!(", {}", percent(f)),
                        None => String::new(),
                    },
                    limit(f)
                ),
            };
            let _ = writeln!(out, "  phase {}: {} {detail}", printable(&phase.name), printable(&f.name));
        }
        for phase in missing {
            let _ = writeln!(out, "  phase {}: in the baseline, not in the current report", printable(&phase.name));
        }
    }
    out
}

/// A value in the table: `unobserved` when its report did not observe it (the reason is
/// in that report's notes and in the list of regressions), `-` when it has none.
fn value(f: &Figure, v: Option<f64>, unobserved: &Option<String>) -> String {
    match v {
        None if unobserved.is_some() => "unobserved".to_string(),
        None => "-".to_string(),
        Some(v) => amount(f.unit, v),
    }
}

fn amount(unit: &str, v: f64) -> String {
    match unit {
        "us" => micros(v.abs().round() as u64),
        "per_s" => format!("{:.1}/s", v.abs()),
        _ => format!("{}", v.abs()),
    }
}

fn change(f: &Figure) -> String {
    match f.change() {
        None => String::new(),
        Some(0.0) => "0".to_string(),
        Some(c) => format!("{}{}", if c > 0.0 { "+" } else { "-" }, amount(f.unit, c)),
    }
}

fn percent(f: &Figure) -> String {
    match (f.relative_change(), f.change()) {
        (_, Some(0.0)) => "0%".to_string(),
        (Some(r), _) => format!("{:+.1}%", r * 100.0),
        (None, Some(c)) if c != 0.0 => "new".to_string(),
        _ => String::new(),
    }
}

/// The limit with the direction it guards: `+20%` (may grow), `-1%` (may shrink), `±5` (either way).
fn limit(f: &Figure) -> String {
    let Some(limit) = f.limit else { return String::new() };
    let sign = match f.better {
        Better::Lower => "+",
        Better::Higher => "-",
        Better::Unchanged => "±",
    };
    format!("{sign}{}", limit.display(f.unit))
}

fn verdict(f: &Figure) -> &'static str {
    match f.verdict {
        Verdict::NotMeasured if f.current_unobserved.is_some() => "UNOBSERVED",
        Verdict::Unlimited => "",
        Verdict::Within => "ok",
        Verdict::Regressed => "REGRESSED",
        Verdict::NotMeasured => "NOT MEASURED",
        Verdict::NoBaseline => "no baseline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{latency, sample_report};

    #[test]
    fn the_table_names_the_regressed_figure() {
        let base = sample_report();
        let mut cur = base.clone();
        cur.phases[0].latency_us.connect = latency(5000, 100, 20_000);
        let c = compare::compare(&base, &cur, &RegressionLimits::defaults()).unwrap();
        let text = render(Path::new("base.json"), &base, Path::new("cur.json"), &cur, &c);
        let row = text.lines().find(|l| l.trim_start().starts_with("connect_p99")).expect(&text);
        assert!(row.contains("REGRESSED") && row.contains("+50%+5ms"), "{row}");
        assert!(text.contains("REGRESSED: 1 of"), "{text}");
        assert!(text.contains("  phase ramp: connect_p99 "), "{text}");
        let established = text.lines().find(|l| l.trim_start().starts_with("established")).expect(&text);
        assert!(established.contains(" ok"), "{established}");
    }

    #[test]
    fn an_unobserved_figure_reads_unobserved_not_zero() {
        let base = sample_report();
        let mut cur = base.clone();
        cur.phases[1].census.client = Default::default();
        cur.phases[1].unobserved.mark("census.client", "the client-side census failed: EPERM");
        let c = compare::compare(&base, &cur, &RegressionLimits::defaults()).unwrap();
        let text = render(Path::new("base.json"), &base, Path::new("cur.json"), &cur, &c);
        let hold = &text[text.find("phase hold").expect(&text)..];
        let row = hold.lines().find(|l| l.trim_start().starts_with("established")).expect(&text);
        assert!(row.contains("5000") && row.contains("unobserved") && row.contains("UNOBSERVED"), "{row}");
        assert!(!row.contains(" 0 "), "{row}");
        assert!(
            text.contains("phase hold: established unobserved in the current report: the client-side census failed"),
            "{text}"
        );
    }
}
