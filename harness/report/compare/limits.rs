//! The regression limits of `sockcap compare` (`--max-regression METRIC=LIMIT,...`):
//! per metric, an [`Allowance`] of a percentage of the baseline, an absolute amount, or
//! both added; parsed, and written back as they were given.

use std::fmt;
use std::str::FromStr;

use crate::expect::Metric;
use crate::latency::{parse_latency_us, LatencyText};

/// How far a figure may move in its worse direction: `percent` of the baseline's
/// value plus `absolute` (in the metric's unit: µs for latencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    pub percent: f64,
    pub absolute: f64,
}

impl Allowance {
    /// The amount allowed for a baseline value.
    pub fn allowed(&self, baseline: f64) -> f64 {
        baseline.abs() * self.percent / 100.0 + self.absolute
    }

    fn parse(metric: &Metric, text: &str) -> Result<Allowance, String> {
        let mut allowance = Allowance { percent: 0.0, absolute: 0.0 };
        let text = text.trim();
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.is_empty() {
            return Err("the limit is empty".into());
        }
        for part in text.split('+').map(str::trim) {
            if let Some(pct) = part.strip_suffix('%') {
                allowance.percent +=
                    non_negative(pct.trim()).ok_or_else(|| format!("`{part}` is not a percentage; write e.g. 10%"))?;
            } else if matches!(metric, Metric::Latency(..)) {
                allowance.absolute += parse_duration_us(part)?;
            } else {
                allowance.absolute += non_negative(part)
                    .ok_or_else(|| format!("`{part}` is not a number or a percentage; write e.g. 5 or 1%"))?;
            }
        }
        Ok(allowance)
    }

    /// As written on the command line, in `unit` (`20%+1ms`, `0`).
    pub fn display(&self, unit: &str) -> String {
        let absolute = match unit {
            "us" => short_duration(self.absolute),
            _ => trim_number(self.absolute),
        };
        match (self.percent > 0.0, self.absolute > 0.0) {
            (true, true) => format!("{}%+{absolute}", trim_number(self.percent)),
            (true, false) => format!("{}%", trim_number(self.percent)),
            (false, _) => absolute,
        }
    }
}

fn non_negative(text: &str) -> Option<f64> {
    text.replace('_', "").parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

fn parse_duration_us(text: &str) -> Result<f64, String> {
    parse_latency_us(text).map_err(|e| match e {
        LatencyText::NotANumber => format!("`{text}` is not a duration; write e.g. 2ms or 10%"),
        LatencyText::NoUnit => {
            format!("`{text}` has no unit; a latency limit is a percentage (10%) or a duration (2ms)")
        }
        LatencyText::UnknownUnit(u) => format!("unknown unit `{u}`; use us, ms or s"),
    })
}

/// Microseconds as a limit is written: `1ms`, `250us`, `1.5s`.
fn short_duration(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}s", trim_number(us / 1e6))
    } else if us >= 1_000.0 {
        format!("{}ms", trim_number(us / 1e3))
    } else {
        format!("{}us", trim_number(us))
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// One metric's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// As written: `connect_p99`.
    pub name: String,
    pub metric: Metric,
    pub allowance: Allowance,
}

/// The limits a comparison judges against: `--max-regression METRIC=LIMIT,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionLimits {
    limits: Vec<Limit>,
}

/// A `--max-regression` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("`{0}` is not METRIC=LIMIT; write e.g. connect_p99=10%,established=1%,errors=0")]
    Syntax(String),
    #[error("in `{item}`: {reason}")]
    Metric { item: String, reason: String },
    #[error("in `{item}`: {reason}")]
    Value { item: String, reason: String },
    #[error("`{0}` is limited twice; give each metric once")]
    Duplicate(String),
}

impl RegressionLimits {
    /// The limits used when `--max-regression` is not given:
    /// `connect_p99=50%+5ms, handshake_p99=50%+5ms, connected=0, established=0, errors=0, drops=0`:
    /// no fewer connections, no fewer established sockets, no more errors or drops, and
    /// p99 latencies may grow by half plus 5 ms. The latency allowance is wide because
    /// p99 is noisy: five identical release runs of `scenarios/quickstart.toml` on a
    /// 2-core machine measured connect p99 from 10 to 17 ms and handshake p99 from 17
    /// to 31 ms. It still catches a p99 that doubles; tighten it on quiet hardware.
    pub fn defaults() -> RegressionLimits {
        "connect_p99=50%+5ms,handshake_p99=50%+5ms,connected=0,established=0,errors=0,drops=0"
            .parse()
            .expect("the default limits parse")
    }

    /// Parse `METRIC=LIMIT[,METRIC=LIMIT...]`.
    pub fn parse(text: &str) -> Result<RegressionLimits, LimitError> {
        let mut limits: Vec<Limit> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (name, value) = item.split_once('=').ok_or_else(|| LimitError::Syntax(item.to_string()))?;
            let name = name.trim();
            let metric = Metric::parse(name).map_err(|reason| LimitError::Metric { item: item.to_string(), reason })?;
            let allowance = Allowance::parse(&metric, value)
                .map_err(|reason| LimitError::Value { item: item.to_string(), reason })?;
            if limits.iter().any(|l| l.metric == metric) {
                return Err(LimitError::Duplicate(name.to_string()));
            }
            limits.push(Limit { name: name.to_string(), metric, allowance });
        }
        Ok(RegressionLimits { limits })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Limit> {
        self.limits.iter()
    }

    /// The limit on `metric`, if any.
    pub fn get(&self, metric: &Metric) -> Option<&Limit> {
        self.limits.iter().find(|l| &l.metric == metric)
    }
}

impl FromStr for RegressionLimits {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RegressionLimits::parse(text)
    }
}

impl fmt::Display for RegressionLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> =
            self.limits.iter().map(|l| format!("{}={}", l.name, l.allowance.display(l.metric.unit()))).collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_floor_and_percent_add_up() {
        let limits: RegressionLimits = "connect_p99=20%+1ms".parse().unwrap();
        let a = limits.get(&Metric::parse("connect_p99").unwrap()).unwrap().allowance;
        assert_eq!(a.allowed(10_000.0), 3_000.0);
        assert_eq!(limits.to_string(), "connect_p99=20%+1ms");
        assert_eq!(RegressionLimits::parse("errors=0").unwrap().to_string(), "errors=0");
    }

    #[test]
    fn bad_limits_say_the_fix() {
        let err = RegressionLimits::parse("conect_p99=10%").unwrap_err();
        assert!(matches!(err, LimitError::Metric { .. }) && err.to_string().contains("unknown metric"), "{err}");
        assert!(RegressionLimits::parse("connect_p99").unwrap_err().to_string().contains("METRIC=LIMIT"));
        assert!(RegressionLimits::parse("connect_p99=10").unwrap_err().to_string().contains("no unit"));
        assert!(RegressionLimits::parse("established=lots").unwrap_err().to_string().contains("not a number"));
        assert!(RegressionLimits::parse("errors=-1").is_err());
        assert!(matches!(RegressionLimits::parse("errors=0,errors=1"), Err(LimitError::Duplicate(_))));
    }
}
