//! The `[search]` table checked ([`SearchSpec`]), and each step's scenario generated
//! from it: the scenario file as written, its `[search]` table and phases replaced by
//! the step's phases, so every step is an ordinary plan run by the engine (and read by
//! worker processes) exactly as `sockcap run` would.
//!
//! A rate step: `warm_up` (100 connections, unjudged), `ramp` (connect `ramp` connections at the step's rate; the objectives),
//! `close` (all, RST), `cool_down` (sleep). A concurrency step: `climb` (connect the
//! step's count at `rate`; the objectives), `hold` (the objectives that a hold measures,
//! and `established >= count`), `close`, `cool_down`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::expect::{Expectation, LatencyKind, Metric};
use crate::scenario::SearchSection;

use super::schedule::{Climb, Resolution, Schedule};

/// What is searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connects per second.
    Rate,
    /// Connections held at once.
    Concurrency,
}

impl Mode {
    pub fn key(self) -> &'static str {
        match self {
            Mode::Rate => "rate",
            Mode::Concurrency => "concurrency",
        }
    }

    /// The level's unit, for the text: "4,800 connects/s", "590 connections".
    pub fn unit(self) -> &'static str {
        match self {
            Mode::Rate => "connects/s",
            Mode::Concurrency => "connections",
        }
    }
}

/// A checked `[search]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    pub mode: Mode,
    pub schedule: Schedule,
    /// Rate mode: connections per step.
    pub ramp: u64,
    /// Concurrency mode: how long each step holds.
    pub hold: Duration,
    /// Concurrency mode: connect rate of the climb.
    pub rate: f64,
    pub cool_down: Duration,
    pub timeout: Duration,
    /// As written (metric → `"OP VALUE"`), checked with the phases' grammar.
    pub objectives: BTreeMap<String, toml::Value>,
}

/// The name of the phase whose objectives judge a step (concurrency also judges `hold`).
pub const JUDGED_PHASES: [&str; 3] = ["ramp", "climb", "hold"];

fn duration(field: &str, text: Option<&str>, default: &str) -> Result<Duration, String> {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("[search] {field} = \"{text}\": {e}; write a duration such as \"{default}\""))
}

impl SearchSpec {
    /// Check the table; errors name the field and the fix (the caller adds the file).
    pub fn from_section(s: &SearchSection) -> Result<SearchSpec, String> {
        let mode = match s.mode.as_str() {
            "rate" => Mode::Rate,
            "concurrency" => Mode::Concurrency,
            other => return Err(format!("[search] mode = \"{other}\": write \"rate\" or \"concurrency\"")),
        };
        if !(s.from.is_finite() && s.from >= 1.0) {
            return Err(format!("[search] from = {}: the first level must be at least 1", s.from));
        }
        if !(s.to.is_finite() && s.to >= s.from) {
            return Err(format!("[search] to = {}: the top of the range must be at least `from` ({})", s.to, s.from));
        }
        if s.to > 10_000_000.0 {
            return Err(format!("[search] to = {}: at most 10,000,000", s.to));
        }
        let climb = match (s.step, s.factor) {
            (Some(step), None) if step.is_finite() && step >= 1.0 => Climb::Add(step),
            (None, Some(f)) if f.is_finite() && f > 1.0 && f <= 100.0 => Climb::Factor(f),
            (Some(step), None) => return Err(format!("[search] step = {step}: must be at least 1")),
            (None, Some(f)) => return Err(format!("[search] factor = {f}: must be above 1 (and at most 100)")),
            (Some(_), Some(_)) => return Err("[search]: give `step` or `factor`, not both".into()),
            (None, None) => {
                return Err("[search]: give `step = N` (added) or `factor = F` (multiplied) to climb".into())
            }
        };
        let resolution = match &s.resolution {
            None => Resolution::Fraction(0.05),
            Some(toml::Value::String(text)) => match text.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(p)) if p > 0.0 && p < 100.0 => Resolution::Fraction(p / 100.0),
                _ => {
                    return Err(format!(
                        "[search] resolution = \"{text}\": write a percentage such as \"2%\" or a number"
                    ))
                }
            },
            Some(toml::Value::Integer(n)) if *n >= 1 => Resolution::Absolute(*n as f64),
            Some(toml::Value::Float(f)) if *f > 0.0 && f.is_finite() => Resolution::Absolute(*f),
            Some(other) => {
                return Err(format!("[search] resolution = {other}: write a percentage such as \"2%\" or a number"))
            }
        };
        let max_steps = match s.max_steps {
            None => 30,
            Some(n) if (1..=200).contains(&n) => n as usize,
            Some(n) => return Err(format!("[search] max_steps = {n}: between 1 and 200")),
        };
        let ramp = match s.ramp {
            None => 2000,
            Some(n) if (1..=10_000_000).contains(&n) => n as u64,
            Some(n) => return Err(format!("[search] ramp = {n}: connections per step, between 1 and 10,000,000")),
        };
        let rate = s.rate.unwrap_or(1000.0);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("[search] rate = {rate}: the climb's connects per second must be above 0"));
        }
        if s.objectives.is_empty() {
            return Err(
                "[search] objectives: none given; write e.g. objectives = { handshake_p99 = \"< 100ms\" }".into()
            );
        }
        for (name, value) in &s.objectives {
            Expectation::parse(name, value).map_err(|e| format!("[search] objectives.{name}: {e}"))?;
        }
        Ok(SearchSpec {
            mode,
            schedule: Schedule { from: s.from, to: s.to, climb, resolution, max_steps, whole: true },
            ramp,
            hold: duration("hold", s.hold.as_deref(), "5s")?,
            rate,
            cool_down: duration("cool_down", s.cool_down.as_deref(), "2s")?,
            timeout: duration("timeout", s.timeout.as_deref(), "10s")?,
            objectives: s.objectives.clone(),
        })
    }

    /// The scenario of the step at `level`: `scenario` (the file as written, parsed)
    /// with its `[search]` table and phases replaced.
    pub fn step_scenario(&self, scenario: &toml::Table, level: f64) -> String {
        let mut table = scenario.clone();
        table.remove("search");
        let dur = |d: Duration| toml::Value::String(humantime::format_duration(d).to_string());
        let timeout = dur(self.timeout);
        let objectives: toml::Table = self.objectives.clone().into_iter().collect();
        let mut phases = Vec::new();
        let connect = |count: u64, rate: f64| {
            let mut c = toml::Table::new();
            c.insert("count".into(), toml::Value::Integer(count as i64));
            c.insert("rate".into(), toml::Value::Float(rate));
            c.insert("timeout".into(), timeout.clone());
            toml::Value::Table(c)
        };
        let count = match self.mode {
            Mode::Rate => {
                // Not judged: the first connections of a step pay for the step's start
                // (workers, allocations, the target's first accepts), not for its rate.
                phases.push(phase("warm_up", "connect", connect(WARM_UP, WARM_UP as f64 * 10.0), lenient()));
                phases.push(phase("ramp", "connect", connect(self.ramp, level), objectives.clone()));
                self.ramp + WARM_UP
            }
            Mode::Concurrency => {
                let n = level as u64;
                phases.push(phase("climb", "connect", connect(n, self.rate), objectives.clone()));
                let mut held: toml::Table =
                    objectives.clone().into_iter().filter(|(name, _)| measured_in_hold(name)).collect();
                held.entry("established").or_insert_with(|| toml::Value::String(format!(">= {n}")));
                phases.push(phase("hold", "hold", dur(self.hold), held));
                n
            }
        };
        let mut close = toml::Table::new();
        close.insert("how".into(), toml::Value::String("rst".into()));
        close.insert("rate".into(), toml::Value::Float((count as f64).max(5000.0)));
        close.insert("fraction".into(), toml::Value::Float(1.0));
        phases.push(phase("close", "close", toml::Value::Table(close), lenient()));
        if !self.cool_down.is_zero() {
            phases.push(phase("cool_down", "sleep", dur(self.cool_down), toml::Table::new()));
        }
        table.insert("phase".into(), toml::Value::Array(phases));
        toml::to_string(&table).unwrap_or_default()
    }
}

/// Connections a rate step opens before its ramp (in 100 ms), unjudged.
pub const WARM_UP: u64 = 100;

/// The expectations of a phase that is not judged: whatever it counts, it does not fail
/// the step (without them `errors == 0` would be implied).
fn lenient() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("errors".into(), toml::Value::String(">= 0".into()));
    t
}

/// A hold measures states, drops, errors and kernel counters, not connect latencies or rates.
fn measured_in_hold(name: &str) -> bool {
    !matches!(
        Metric::parse(name),
        Ok(Metric::Latency(LatencyKind::Connect | LatencyKind::Handshake, _) | Metric::Rate | Metric::Connected)
    )
}

fn phase(name: &str, key: &str, action: toml::Value, expect: toml::Table) -> toml::Value {
    let mut p = toml::Table::new();
    p.insert("name".into(), toml::Value::String(name.into()));
    p.insert(key.into(), action);
    if !expect.is_empty() {
        p.insert("expect".into(), toml::Value::Table(expect));
    }
    toml::Value::Table(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> SearchSection {
        toml::from_str(text).unwrap()
    }

    const RATE: &str = r#"
        mode = "rate"
        from = 500
        to = 4000
        step = 500
        ramp = 300
        objectives = { handshake_p99 = "< 100ms", errors = "== 0" }
    "#;

    #[test]
    fn a_rate_step_is_a_plan_with_the_objectives_on_its_ramp() {
        let spec = SearchSpec::from_section(&section(RATE)).unwrap();
        let base: toml::Table =
            toml::from_str(&format!("name = \"s\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n[search]\n{RATE}"))
                .unwrap();
        let text = spec.step_scenario(&base, 1500.0);
        let plan = crate::plan::Plan::from_toml(std::path::Path::new("step.toml"), &text).unwrap();
        let names: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["warm_up", "ramp", "close", "cool_down"]);
        let exprs: Vec<&str> = plan.phases[1].expect.iter().map(|e| e.expr.as_str()).collect();
        assert_eq!(exprs, ["errors == 0", "handshake_p99 < 100ms"]);
        assert!(text.contains("rate = 1500.0") && text.contains("count = 300"), "{text}");
    }

    #[test]
    fn a_concurrency_step_holds_and_judges_what_a_hold_measures() {
        let text = r#"
            mode = "concurrency"
            from = 100
            to = 1000
            factor = 2
            hold = "1s"
            objectives = { handshake_p99 = "< 1s", errors = "== 0", drops = "== 0" }
        "#;
        let spec = SearchSpec::from_section(&section(text)).unwrap();
        let base: toml::Table =
            toml::from_str("name = \"s\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"").unwrap();
        let plan = crate::plan::Plan::from_toml(std::path::Path::new("s"), &spec.step_scenario(&base, 400.0)).unwrap();
        let hold: Vec<&str> = plan.phases[1].expect.iter().map(|e| e.expr.as_str()).collect();
        assert_eq!(hold, ["drops == 0", "errors == 0", "established >= 400"]);
    }

    #[test]
    fn bad_tables_name_the_field_and_the_fix() {
        let bad =
            |replace: &str, with: &str| SearchSpec::from_section(&section(&RATE.replace(replace, with))).unwrap_err();
        assert!(bad("\"rate\"", "\"speed\"").contains("mode"));
        assert!(bad("to = 4000", "to = 100").contains("to = 100"));
        assert!(bad("step = 500", "factor = 0.5").contains("factor"));
        assert!(bad("step = 500", "").contains("step"));
        assert!(bad("\"< 100ms\"", "\"< banana\"").contains("objectives.handshake_p99"));
        assert!(bad("handshake_p99", "handshake_p42").contains("objectives.handshake_p42"));
        assert!(bad("ramp = 300", "ramp = 300\nresolution = \"200%\"").contains("resolution"));
    }
}
