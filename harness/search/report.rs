//! The search's report (schema `sockcap.search/1`, docs/search.schema.json): every
//! step's level, figures, objectives and verdict, and the search's verdict; and its
//! text: a line per step as it ends, a line for the verdict.

use serde::{Deserialize, Serialize};

use crate::report::ExpectationResult;

use super::judge::StepFigures;
use super::schedule::Conclusion;
use super::spec::Mode;

/// One step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// 1, 2, ...
    pub index: u32,
    /// The level tried: connects per second (rate) or connections (concurrency).
    pub level: f64,
    /// `holds`, `breaks`, `unknown` or `interrupted`.
    pub verdict: String,
    /// Why an `unknown` step could not be judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The run's `invalid` reason (the generator was the bottleneck), when it had one.
    #[serde(default)]
    pub invalid: Option<String>,
    pub figures: StepFigures,
    /// The objectives judged on the step's phases (`PHASE: expr`).
    pub objectives: Vec<ExpectationResult>,
    pub duration_ms: u64,
}

/// The search's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchVerdict {
    /// `limit`, `holds_to_top`, `breaks_at_first`, `unknown` or `stopped`.
    pub kind: String,
    /// The highest level that held (null: none did).
    pub holds: Option<f64>,
    /// The lowest level that breached (null: none did).
    pub breaks: Option<f64>,
    /// False when the steps ran out before the resolution was reached.
    pub resolved: bool,
    /// The verdict as printed.
    pub text: String,
}

/// The whole search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchReport {
    /// `sockcap.search/1`.
    pub schema: String,
    pub scenario: String,
    /// `rate` or `concurrency`.
    pub mode: String,
    /// `connects/s` or `connections`.
    pub unit: String,
    /// The objectives as written (`metric OP VALUE`).
    pub objectives: Vec<String>,
    pub steps: Vec<StepReport>,
    /// Null until the search ended.
    pub verdict: Option<SearchVerdict>,
    pub duration_ms: u64,
}

/// `4,800`: a level with thousands separated.
pub fn level_text(level: f64) -> String {
    let whole = level.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

/// The figures of a step in words: "handshake p99 62 ms, 0 errors".
pub fn figures_text(f: &StepFigures) -> String {
    let p99 = f.handshake_p99_us.map_or("no handshake completed".to_string(), |us| format!("handshake p99 {}", ms(us)));
    let mut errors = format!("{} errors", level_text(f.errors as f64));
    if f.errors > 0 && f.planned > 0 {
        let kinds: Vec<String> = f.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let share = 100.0 * f.errors as f64 / f.planned as f64;
        errors = format!("{errors} ({share:.1} %: {})", kinds.join(", "));
    }
    let drops = if f.drops > 0 { format!(", {} dropped", f.drops) } else { String::new() };
    format!("{p99}, {errors}{drops}")
}

impl StepReport {
    /// "step 3: 4,800 connects/s: handshake p99 62 ms, 0 errors — holds".
    pub fn line(&self, mode: Mode) -> String {
        let what = match self.verdict.as_str() {
            "breaks" => {
                let failed: Vec<&str> = self.objectives.iter().filter(|o| !o.passed).map(|o| o.expr.as_str()).collect();
                format!("breaks ({} failed)", failed.join("; "))
            }
            "unknown" => format!("unknown: {}", self.why.as_deref().unwrap_or("?")),
            other => other.to_string(),
        };
        format!(
            "step {}: {} {}: {} — {what}",
            self.index,
            level_text(self.level),
            mode.unit(),
            figures_text(&self.figures)
        )
    }
}

/// The verdict, in words, from the conclusion and the steps.
pub fn verdict(conclusion: &Conclusion, steps: &[StepReport], mode: Mode, objectives: &[String]) -> SearchVerdict {
    let unit = mode.unit();
    let at = |level: f64| steps.iter().rev().find(|s| s.level == level);
    let goals = objectives.join(", ");
    let (kind, holds, breaks, resolved, text) = match conclusion {
        Conclusion::Limit { holds, breaks, resolved } => {
            let held = at(*holds).map(|s| figures_text(&s.figures)).unwrap_or_default();
            let broke = at(*breaks).map(|s| figures_text(&s.figures)).unwrap_or_default();
            let note = if *resolved { "" } else { " (the steps ran out before the resolution)" };
            let text = format!(
                "sustains {} {unit} with {goals} ({held}); breaks at {}: {broke}{note}",
                level_text(*holds),
                level_text(*breaks)
            );
            ("limit", Some(*holds), Some(*breaks), *resolved, text)
        }
        Conclusion::HoldsToTop { top } => {
            let text = format!("holds up to {} {unit}, the range's top, with {goals}", level_text(*top));
            ("holds_to_top", Some(*top), None, true, text)
        }
        Conclusion::BreaksAtFirst { at: level } => {
            let broke = at(*level).map(|s| figures_text(&s.figures)).unwrap_or_default();
            let text = format!("breaks already at the first step, {} {unit}: {broke}", level_text(*level));
            ("breaks_at_first", None, Some(*level), false, text)
        }
        Conclusion::Unknown { at: level, holds, why } => {
            let held = holds.map_or("no step held".to_string(), |h| format!("holds {} {unit}", level_text(h)));
            let text = format!("{held}; the limit above is unknown: at {} {unit}, twice: {why}", level_text(*level));
            ("unknown", *holds, None, false, text)
        }
        Conclusion::Stopped { holds, why } => {
            let held = holds.map_or("no step held".to_string(), |h| format!("holds {} {unit}", level_text(h)));
            ("stopped", *holds, None, false, format!("{held}; search stopped: {why}"))
        }
    };
    SearchVerdict { kind: kind.into(), holds, breaks, resolved, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_figures_read_as_the_brief_says() {
        assert_eq!(level_text(4800.0), "4,800");
        assert_eq!(level_text(1234567.0), "1,234,567");
        assert_eq!(level_text(590.0), "590");
        let mut f = StepFigures { handshake_p99_us: Some(62_400), planned: 1000, ..Default::default() };
        assert_eq!(figures_text(&f), "handshake p99 62 ms, 0 errors");
        f.errors = 4;
        f.errors_by_kind.insert("refused".into(), 4);
        assert_eq!(figures_text(&f), "handshake p99 62 ms, 4 errors (0.4 %: refused 4)");
    }
}
