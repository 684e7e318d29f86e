//! Expectations: `metric = "OP VALUE"` pairs of a phase's `expect` table, parsed into
//! [`Expectation`]s. Judging them against a phase's figures is the report's
//! (`report/judge.rs`): this grammar sits below the report and the plan, which reads it.
//!
//! Metrics: any TCP state (`established`, `time_wait`, ...; client side, or
//! `server.<state>`), latency percentiles (`connect_p99`, `handshake_p50`, `close_max`,
//! with a unit: `"< 20ms"`), `errors` and `errors.<kind>`, `kernel.<Counter>`
//! (a delta over the phase), `connected` (successes), `drops` (or `lost`), `reconnect_attempts`,
//! `reconnected`, `rate` (per second); the recovery of lost connections: `recovery_p50` ...
//! `recovery_max` (durations, like the latencies) and `peak_reconnect_rate` (per second).

use probe::TcpState;

use crate::failure::ErrorKind;
use crate::latency::{parse_latency_us, LatencyText};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    const ALL: [(&'static str, Op); 6] =
        [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)];

    fn symbol(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map(|(s, _)| *s).unwrap_or("?")
    }

    pub fn holds(self, actual: f64, expected: f64) -> bool {
        match self {
            Op::Lt => actual < expected,
            Op::Le => actual <= expected,
            Op::Gt => actual > expected,
            Op::Ge => actual >= expected,
            Op::Eq => actual == expected,
            Op::Ne => actual != expected,
        }
    }
}

/// Which side of the connection a state census counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Which latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    Connect,
    /// The TLS handshake (transport `tls`).
    Tls,
    /// The WebSocket upgrade (transport `ws`, `wss`).
    Ws,
    Handshake,
    Close,
    /// A lost connection's time back (the phase's `recovery.recovery_us`).
    Recovery,
    /// How late sockcap issued its operations after their scheduled instants.
    Lateness,
    /// SUBSCRIBE to SUBACK (`messages.latency_us.suback`).
    Suback,
    /// A message's scheduled instant to its PUBACK (QoS 1).
    Puback,
    /// A message's scheduled instant to its PUBCOMP (QoS 2).
    Pubcomp,
    /// A message's scheduled instant to its receipt by a subscriber.
    Delivery,
}

impl LatencyKind {
    pub const ALL: [LatencyKind; 11] = [
        LatencyKind::Connect,
        LatencyKind::Tls,
        LatencyKind::Ws,
        LatencyKind::Handshake,
        LatencyKind::Close,
        LatencyKind::Recovery,
        LatencyKind::Lateness,
        LatencyKind::Suback,
        LatencyKind::Puback,
        LatencyKind::Pubcomp,
        LatencyKind::Delivery,
    ];

    /// Its name in expectations (`connect_p99`) and reports.
    pub fn key(self) -> &'static str {
        match self {
            LatencyKind::Connect => "connect",
            LatencyKind::Tls => "tls",
            LatencyKind::Ws => "ws",
            LatencyKind::Handshake => "handshake",
            LatencyKind::Close => "close",
            LatencyKind::Recovery => "recovery",
            LatencyKind::Lateness => "lateness",
            LatencyKind::Suback => "suback",
            LatencyKind::Puback => "puback",
            LatencyKind::Pubcomp => "pubcomp",
            LatencyKind::Delivery => "delivery",
        }
    }
}

/// A message figure of a phase (`messages.*` in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFigure {
    Published,
    Unsent,
    Acknowledged,
    Expected,
    Delivered,
    Lost,
    Duplicated,
    OutOfOrder,
    Subscribed,
    SubscribeRefused,
    AckTimedOut,
}

impl MessageFigure {
    pub const ALL: [MessageFigure; 11] = [
        MessageFigure::Published,
        MessageFigure::Unsent,
        MessageFigure::Acknowledged,
        MessageFigure::Expected,
        MessageFigure::Delivered,
        MessageFigure::Lost,
        MessageFigure::Duplicated,
        MessageFigure::OutOfOrder,
        MessageFigure::Subscribed,
        MessageFigure::SubscribeRefused,
        MessageFigure::AckTimedOut,
    ];

    /// Its name after `messages.` (and alone, but for `lost`, which alone means `drops`).
    pub fn key(self) -> &'static str {
        match self {
            MessageFigure::Published => "published",
            MessageFigure::Unsent => "unsent",
            MessageFigure::Acknowledged => "acknowledged",
            MessageFigure::Expected => "expected",
            MessageFigure::Delivered => "delivered",
            MessageFigure::Lost => "lost",
            MessageFigure::Duplicated => "duplicated",
            MessageFigure::OutOfOrder => "out_of_order",
            MessageFigure::Subscribed => "subscribed",
            MessageFigure::SubscribeRefused => "subscribe_refused",
            MessageFigure::AckTimedOut => "ack_timed_out",
        }
    }

    /// `messages.<key>`, or `<key>` alone but `lost`.
    fn parse(name: &str) -> Option<MessageFigure> {
        let (key, prefixed) = match name.strip_prefix("messages.") {
            Some(k) => (k, true),
            None => (name, false),
        };
        MessageFigure::ALL.into_iter().find(|f| f.key() == key && (prefixed || *f != MessageFigure::Lost))
    }
}

/// A figure of what the target's processes spent (`target.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFigure {
    /// RSS summed over its processes (bytes).
    Rss,
    /// RSS per connection it holds (bytes).
    RssPerConn,
    /// CPU over the phase, % of one core.
    Cpu,
}

/// A percentile (or the extremes) of a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    P50,
    P90,
    P99,
    P999,
    Max,
    Min,
}

/// What an expectation measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    State(Side, TcpState),
    Latency(LatencyKind, Percentile),
    /// All errors (`None`) or one kind.
    Errors(Option<ErrorKind>),
    /// One kind's failures with one reason: `errors.connack_refused.quota_exceeded`
    /// (the key in the phase's `errors`, without `errors.`).
    ErrorReason(String),
    Kernel(String),
    Connected,
    /// Established connections lost (`drops`, or `lost`).
    Drops,
    ReconnectAttempts,
    Reconnected,
    /// The most reconnects in one second (`recovery.peak_reconnect_rate_per_s`).
    PeakReconnectRate,
    Rate,
    /// What the target spent (`target.rss`, `target.rss_per_conn`, `target.cpu`).
    Target(TargetFigure),
    /// sockcap's own CPU share of its cores (`sockcap.cpu`).
    SockcapCpu,
    /// A message figure: `published`, `delivered`, `messages.lost`, ...
    Message(MessageFigure),
}

impl Metric {
    /// Parse a metric name, or say what names exist.
    pub fn parse(name: &str) -> Result<Metric, String> {
        if let Some(state) = name.strip_prefix("server.") {
            return TcpState::from_key(state)
                .map(|s| Metric::State(Side::Server, s))
                .ok_or_else(|| format!("`{state}` is not a TCP state; use one of {}", state_list()));
        }
        if let Some(state) = TcpState::from_key(name) {
            return Ok(Metric::State(Side::Client, state));
        }
        if name == "errors" {
            return Ok(Metric::Errors(None));
        }
        if let Some((kind, reason)) = name.strip_prefix("errors.").and_then(|k| k.split_once('.')) {
            let reasoned =
                matches!(ErrorKind::from_key(kind), Some(ErrorKind::ConnackRefused | ErrorKind::ServerDisconnect));
            let named =
                !reason.is_empty() && reason.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            return if reasoned && named {
                Ok(Metric::ErrorReason(format!("{kind}.{reason}")))
            } else {
                Err(format!(
                    "`{kind}.{reason}` is not an error reason; use connack_refused.<reason> or \
                     server_disconnect.<reason>, e.g. connack_refused.quota_exceeded"
                ))
            };
        }
        if let Some(kind) = name.strip_prefix("errors.") {
            let list = || ErrorKind::ALL.map(|k| k.key()).join(", ");
            return ErrorKind::from_key(kind)
                .map(|k| Metric::Errors(Some(k)))
                .ok_or_else(|| format!("`{kind}` is not an error kind; use one of {}", list()));
        }
        if let Some(counter) = name.strip_prefix("kernel.") {
            let valid = !counter.is_empty() && counter.chars().all(|c| c.is_ascii_alphanumeric());
            return if valid {
                Ok(Metric::Kernel(counter.to_string()))
            } else {
                Err(format!("`{counter}` is not a counter name from /proc/net/snmp or /proc/net/netstat"))
            };
        }
        if let Some(figure) = MessageFigure::parse(name) {
            return Ok(Metric::Message(figure));
        }
        match name {
            "target.rss" => return Ok(Metric::Target(TargetFigure::Rss)),
            "target.rss_per_conn" => return Ok(Metric::Target(TargetFigure::RssPerConn)),
            "target.cpu" => return Ok(Metric::Target(TargetFigure::Cpu)),
            "sockcap.cpu" => return Ok(Metric::SockcapCpu),
            "connected" => return Ok(Metric::Connected),
            "drops" | "lost" => return Ok(Metric::Drops),
            "reconnect_attempts" => return Ok(Metric::ReconnectAttempts),
            "reconnected" => return Ok(Metric::Reconnected),
            "peak_reconnect_rate" => return Ok(Metric::PeakReconnectRate),
            "rate" => return Ok(Metric::Rate),
            _ => {}
        }
        if let Some((which, pct)) = name.rsplit_once('_') {
            let kind = LatencyKind::ALL.into_iter().find(|k| k.key() == which);
            let pct = match pct {
                "p50" => Some(Percentile::P50),
                "p90" => Some(Percentile::P90),
                "p99" => Some(Percentile::P99),
                "p999" => Some(Percentile::P999),
                "max" => Some(Percentile::Max),
                "min" => Some(Percentile::Min),
                _ => None,
            };
            if let (Some(kind), Some(pct)) = (kind, pct) {
                return Ok(Metric::Latency(kind, pct));
            }
        }
        Err(format!(
            "unknown metric `{name}`; use a TCP state ({}), `server.<state>`, \
             `connect_p99` / `tls_p99` / `ws_p99` / `handshake_p50` / `close_max` / `recovery_p90` (p50 p90 p99 p999 min max), \
             `lateness_p99`, `errors`, `errors.<kind>`, `kernel.<Counter>`, `connected`, `drops` (`lost`), \
             `reconnect_attempts`, `reconnected`, `peak_reconnect_rate`, `rate`, `target.rss`, \
             `target.rss_per_conn`, `target.cpu`, `sockcap.cpu`, messages (`published`, `delivered`, `expected`, \
             `messages.lost`, `duplicated`, `out_of_order`, `acknowledged`, `subscribed`, `subscribe_refused`, \
             `ack_timed_out`; latencies `suback_p99`, `puback_p99`, `pubcomp_p99`, `delivery_p99`)",
            state_list()
        ))
    }

    /// The unit the value is compared in.
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::Latency(..) => "us",
            Metric::Rate | Metric::PeakReconnectRate => "per_s",
            Metric::Target(TargetFigure::Rss | TargetFigure::RssPerConn) => "bytes",
            Metric::Target(TargetFigure::Cpu) | Metric::SockcapCpu => "percent",
            _ => "count",
        }
    }
}

fn state_list() -> String {
    TcpState::REPORTED.map(|s| s.key()).join(", ")
}

/// A parsed expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub metric: Metric,
    pub op: Op,
    /// The threshold in the metric's unit (µs for latencies).
    pub value: f64,
    /// As the user wrote it: `established >= 5000`.
    pub expr: String,
    /// Added by sockcap, not written in the scenario.
    pub implicit: bool,
    /// Compared with another figure of the phase instead of `value`: `delivered = "== published"`.
    pub against: Option<Metric>,
}

impl Expectation {
    /// Parse `name = value` where value is `"OP NUMBER[UNIT]"` (or a bare number, meaning `==`).
    pub fn parse(name: &str, value: &toml::Value) -> Result<Expectation, String> {
        let metric = Metric::parse(name)?;
        let (op, number) = match value {
            toml::Value::String(s) => split_op(s)?,
            toml::Value::Integer(n) => (Op::Eq, n.to_string()),
            toml::Value::Float(f) => (Op::Eq, f.to_string()),
            other => {
                return Err(format!(
                    "expected a string such as \">= 5000\" or \"< 20ms\", found a {}",
                    other.type_str()
                ))
            }
        };
        if let Ok(Metric::Message(other)) = Metric::parse(number.trim()) {
            return Ok(Expectation {
                expr: format!("{name} {} {}", op.symbol(), number.trim()),
                metric,
                op,
                value: 0.0,
                implicit: false,
                against: Some(Metric::Message(other)),
            });
        }
        let value = parse_threshold(&metric, &number)?;
        Ok(Expectation {
            expr: format!("{name} {} {}", op.symbol(), number.trim()),
            metric,
            op,
            value,
            implicit: false,
            against: None,
        })
    }

    /// `errors == 0`, added to phases that name no error expectation.
    pub fn no_errors() -> Expectation {
        Expectation {
            metric: Metric::Errors(None),
            op: Op::Eq,
            value: 0.0,
            expr: "errors == 0".into(),
            implicit: true,
            against: None,
        }
    }
}

fn split_op(s: &str) -> Result<(Op, String), String> {
    let s = s.trim();
    for (symbol, op) in Op::ALL {
        if let Some(rest) = s.strip_prefix(symbol) {
            return Ok((op, rest.trim().to_string()));
        }
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) || MessageFigure::parse(s).is_some() {
        return Ok((Op::Eq, s.to_string()));
    }
    Err(format!("`{s}` does not start with a comparison; write it as \">= 5000\" (one of < <= > >= == !=)"))
}

fn parse_threshold(metric: &Metric, text: &str) -> Result<f64, String> {
    let text = text.trim().replace('_', "");
    match metric.unit() {
        "bytes" => return parse_bytes(&text),
        "percent" => return parse_percent(&text),
        _ => {}
    }
    if let Metric::Latency(..) = metric {
        return parse_latency_us(&text).map_err(|e| match e {
            LatencyText::NotANumber => format!("`{text}` is not a duration; write e.g. \"< 20ms\""),
            LatencyText::NoUnit => format!("`{text}` has no unit; latencies need one: \"< {text}ms\" (us, ms or s)"),
            LatencyText::UnknownUnit(u) => format!("unknown unit `{u}`; use us, ms or s"),
        });
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{text}` is not a number; write e.g. \">= 5000\""))
}

/// A size: `10KiB`, `1.5 MiB`, `512` (bytes), `2GiB`; KB/MB/GB are read as powers of 1000.
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. \"< 10KiB\""))?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => return Err(format!("unknown size unit `{other}`; use B, KiB, MiB, GiB (or KB, MB, GB)")),
    };
    Ok(number * scale)
}

/// A percentage: `90%` or `90`.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    text.trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("`{text}` is not a percentage; write e.g. \"< 90%\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, value: &str) -> Result<Expectation, String> {
        Expectation::parse(name, &toml::Value::String(value.into()))
    }

    #[test]
    fn states_and_sides() {
        let e = parse("established", ">= 5_000").unwrap();
        assert_eq!(e.metric, Metric::State(Side::Client, TcpState::Established));
        assert_eq!((e.op, e.value), (Op::Ge, 5000.0));
        assert_eq!(e.expr, "established >= 5_000");
        let e = parse("server.time_wait", "> 0").unwrap();
        assert_eq!(e.metric, Metric::State(Side::Server, TcpState::TimeWait));
    }

    #[test]
    fn latency_needs_a_unit() {
        let e = parse("connect_p99", "< 20ms").unwrap();
        assert_eq!(e.metric, Metric::Latency(LatencyKind::Connect, Percentile::P99));
        assert_eq!(e.value, 20_000.0);
        assert_eq!(parse("handshake_p999", "<= 1.5s").unwrap().value, 1_500_000.0);
        assert!(parse("connect_p99", "< 20").unwrap_err().contains("no unit"));
        let e = parse("recovery_max", "< 5s").unwrap();
        assert_eq!((e.metric, e.value), (Metric::Latency(LatencyKind::Recovery, Percentile::Max), 5_000_000.0));
        assert!(parse("recovery_p99", "< 5").unwrap_err().contains("no unit"));
        let e = parse("peak_reconnect_rate", ">= 100").unwrap();
        assert_eq!((e.metric.clone(), e.metric.unit()), (Metric::PeakReconnectRate, "per_s"));
    }

    #[test]
    fn spend_sizes_and_percentages() {
        let e = parse("target.rss_per_conn", "< 10KiB").unwrap();
        assert_eq!(
            (e.metric.clone(), e.value, e.metric.unit()),
            (Metric::Target(TargetFigure::RssPerConn), 10_240.0, "bytes")
        );
        assert_eq!(parse("target.rss", "< 1.5 MiB").unwrap().value, 1.5 * 1024.0 * 1024.0);
        let e = parse("target.cpu", "< 90%").unwrap();
        assert_eq!((e.metric.clone(), e.value, e.metric.unit()), (Metric::Target(TargetFigure::Cpu), 90.0, "percent"));
        assert_eq!(parse("sockcap.cpu", "< 80").unwrap().metric, Metric::SockcapCpu);
        let e = parse("lateness_p99", "< 10ms").unwrap();
        assert_eq!((e.metric, e.value), (Metric::Latency(LatencyKind::Lateness, Percentile::P99), 10_000.0));
        assert!(parse("target.rss", "< 10 parsecs").unwrap_err().contains("KiB"));
        assert!(parse("target.cpu", "< lots").unwrap_err().contains("percentage"));
    }

    #[test]
    fn errors_and_kernel() {
        assert_eq!(parse("errors", "== 0").unwrap().metric, Metric::Errors(None));
        assert_eq!(parse("errors.refused", "> 0").unwrap().metric, Metric::Errors(Some(ErrorKind::Refused)));
        assert!(parse("errors.nope", "> 0").unwrap_err().contains("not an error kind"));
        let reason = parse("errors.connack_refused.quota_exceeded", "== 30").unwrap().metric;
        assert_eq!(reason, Metric::ErrorReason("connack_refused.quota_exceeded".into()));
        assert!(parse("errors.refused.quota", "> 0").unwrap_err().contains("not an error reason"));
        let e = parse("kernel.ListenOverflows", "== 0").unwrap();
        assert_eq!(e.metric, Metric::Kernel("ListenOverflows".into()));
    }

    #[test]
    fn bare_numbers_mean_equal() {
        let e = Expectation::parse("errors", &toml::Value::Integer(0)).unwrap();
        assert_eq!((e.op, e.value), (Op::Eq, 0.0));
        assert_eq!(parse("time_wait", "100").unwrap().op, Op::Eq);
    }

    #[test]
    fn bad_input_says_the_fix() {
        assert!(parse("establishd", ">= 1").unwrap_err().contains("unknown metric"));
        assert!(parse("established", "at least 5").unwrap_err().contains("comparison"));
        assert!(parse("established", ">= lots").unwrap_err().contains("not a number"));
        let err = Expectation::parse("established", &toml::Value::Boolean(true)).unwrap_err();
        assert!(err.contains("found a boolean"));
    }

    #[test]
    fn message_figures_and_a_figure_on_the_right() {
        let e = parse("delivered", "== published").unwrap();
        assert_eq!(
            (e.metric, e.against),
            (Metric::Message(MessageFigure::Delivered), Some(Metric::Message(MessageFigure::Published)))
        );
        assert_eq!(e.expr, "delivered == published");
        assert_eq!(parse("messages.lost", "== 0").unwrap().metric, Metric::Message(MessageFigure::Lost));
        assert_eq!(parse("lost", "== 0").unwrap().metric, Metric::Drops, "`lost` alone keeps meaning drops");
        let e = parse("delivery_p99", "< 50ms").unwrap();
        assert_eq!((e.metric, e.value), (Metric::Latency(LatencyKind::Delivery, Percentile::P99), 50_000.0));
        assert!(parse("delivered", "== nothing").unwrap_err().contains("not a number"));
    }

    #[test]
    fn ops_compare() {
        assert!(Op::Ge.holds(5.0, 5.0) && !Op::Gt.holds(5.0, 5.0));
        assert!(Op::Lt.holds(4.0, 5.0) && Op::Ne.holds(4.0, 5.0) && Op::Le.holds(5.0, 5.0));
    }
}
