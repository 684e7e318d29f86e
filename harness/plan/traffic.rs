//! Messages over held MQTT connections: the `subscribe` and `publish` phase actions
//! ([`SubscribePlan`], [`PublishPlan`]), the topic templates they build from a
//! connection's number ([`TopicTemplate`]: `bench/{n}`, `{n - K}`, `{n + K}`, `{n % K}`),
//! which connections take part ([`Clients`]: a range of connection numbers), and how
//! many subscribers a topic reaches ([`Fanout`]): each message's expected deliveries.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::error::{Check, PlanError};
use crate::protocol::mqtt::traffic::STAMP_LEN;
use crate::protocol::Protocol;
use crate::scenario::{PublishSection, SubscribeSection};

/// The largest `size` of a message (the codec's packet cap less topic and headers).
pub const MAX_SIZE: usize = 60_000;

/// Subscribe each connection in `clients` to `topic` rendered with its number.
#[derive(Debug, Clone)]
pub struct SubscribePlan {
    pub topic: TopicTemplate,
    pub qos: u8,
    pub clients: Clients,
    /// From the SUBSCRIBE to its SUBACK.
    pub timeout: Duration,
}

/// Publish `count` messages at `rate` per second in all, open loop: message `i` at
/// `start + i / rate`, by the `i % P`-th of the `P` connections in `clients`.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub topic: TopicTemplate,
    pub qos: u8,
    pub clients: Clients,
    pub rate: f64,
    /// Payload bytes, the [`STAMP_LEN`]-byte stamp included.
    pub size: usize,
    pub count: u64,
    /// Messages of one publisher awaiting their PUBACK / PUBCOMP at once.
    pub max_inflight: usize,
    /// From a message's scheduled instant to its acknowledgement.
    pub timeout: Duration,
    /// How long after the last scheduled message the phase waits for deliveries.
    pub drain: Duration,
}

/// Connection numbers `from..to` (`to` excluded), or a share of the connections the
/// phases before opened (`share`, in millionths: resolved by [`Clients::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    pub from: u64,
    pub to: u64,
    pub share: Option<(u32, u32)>,
}

impl Clients {
    pub fn contains(&self, n: u64) -> bool {
        (self.from..self.to).contains(&n)
    }

    /// The connection numbers, a share resolved against the `opened` connections.
    pub fn resolve(self, opened: u64) -> Clients {
        let Some((a, b)) = self.share else { return self };
        let at = |ppm: u32| (u128::from(opened) * u128::from(ppm) / 1_000_000) as u64;
        Clients { from: at(a), to: at(b), share: None }
    }

    /// `"a..b"`, or a share of the connections opened before: `"50%..100%"`, `"10%"` (the first 10%).
    pub fn parse(text: &str) -> Result<Clients, String> {
        let fix = "write a range of connection numbers such as \"0..5000\" (the first 5,000 connections) \
                   or a share such as \"50%..100%\" or \"10%\" (of the connections opened before)";
        let pct = |s: &str| {
            let p = s.trim().strip_suffix('%')?.trim().parse::<f64>().ok()?;
            (0.0..=100.0).contains(&p).then(|| (p * 10_000.0).round() as u32)
        };
        let (a, b) = match text.split_once("..") {
            None => match pct(text) {
                Some(b) if b > 0 => return Ok(Clients { from: 0, to: u64::MAX, share: Some((0, b)) }),
                _ => return Err(format!("`{text}` is not a range: {fix}")),
            },
            Some(ab) => ab,
        };
        if a.contains('%') || b.contains('%') {
            return match (pct(a), pct(b)) {
                (Some(a), Some(b)) if a < b => Ok(Clients { from: 0, to: u64::MAX, share: Some((a, b)) }),
                _ => Err(format!("`{text}` is not a share of the connections: {fix}")),
            };
        }
        let (from, to) = match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("`{text}` is not a range: {fix}")),
        };
        if from >= to {
            return Err(format!("`{text}` is empty: {fix}"));
        }
        Ok(Clients { from, to, share: None })
    }
}

/// A topic with `{n}` placeholders: the connection number, or `n - K`, `n + K`, `n % K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    N(Op, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Rem,
}

impl TopicTemplate {
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let fix = "placeholders are {n}, {n - K}, {n + K} or {n % K} with K a whole number";
        if text.is_empty() || text.len() > 1024 {
            return Err("a topic has 1 to 1,024 bytes".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("`{text}` has an unclosed `{{`: {fix}"))? + open;
            let inner: String = rest[open + 1..close].chars().filter(|c| !c.is_whitespace()).collect();
            let part = match inner.strip_prefix('n') {
                Some("") => Part::N(Op::Add, 0),
                Some(e) => {
                    let (op, k) = match e.split_at(1) {
                        ("+", k) => (Op::Add, k),
                        ("-", k) => (Op::Sub, k),
                        ("%", k) => (Op::Rem, k),
                        _ => return Err(format!("`{{{inner}}}` in `{text}`: {fix}")),
                    };
                    let k = k.parse::<u64>().map_err(|_| format!("`{{{inner}}}` in `{text}`: {fix}"))?;
                    if op == Op::Rem && k == 0 {
                        return Err(format!("`{{{inner}}}` in `{text}` divides by zero"));
                    }
                    Part::N(op, k)
                }
                None => return Err(format!("`{{{inner}}}` in `{text}`: {fix}")),
            };
            parts.push(part);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(TopicTemplate { parts })
    }

    /// The topic of connection `n`; `None` when `n - K` would be negative.
    pub fn render(&self, n: u64) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::N(Op::Add, k) => out.push_str(&n.checked_add(*k)?.to_string()),
                Part::N(Op::Sub, k) => out.push_str(&n.checked_sub(*k)?.to_string()),
                Part::N(Op::Rem, k) => out.push_str(&(n % k).to_string()),
            }
        }
        Some(out)
    }

    /// Whether any part of it is a wildcard (`+` or `#`).
    fn has_wildcard(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Text(t) if t.contains(['+', '#'])))
    }
}

/// Whether topic filter `filter` matches `topic` (MQTT §4.7: `+` one level, `#` the rest).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return !topic.starts_with('$'),
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// How many subscriptions each topic reaches: the subscribe phases' filters, counted
/// (a shared subscription `$share/group/filter` counts once per group).
#[derive(Debug, Default)]
pub struct Fanout {
    exact: HashMap<String, u64>,
    wild: Vec<(String, u64)>,
}

impl Fanout {
    /// The subscriptions of `subscribes` for connections numbered below `opened`.
    pub fn of<'a>(subscribes: impl IntoIterator<Item = &'a SubscribePlan>, opened: u64) -> Fanout {
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut shared = HashSet::new();
        for s in subscribes {
            for n in s.clients.from..s.clients.to.min(opened) {
                let Some(filter) = s.topic.render(n) else { continue };
                if let Some(rest) = filter.strip_prefix("$share/") {
                    if let Some((group, f)) = rest.split_once('/') {
                        if shared.insert((group.to_string(), f.to_string())) {
                            *counts.entry(f.to_string()).or_default() += 1;
                        }
                    }
                    continue;
                }
                *counts.entry(filter).or_default() += 1;
            }
        }
        let mut fanout = Fanout::default();
        for (filter, count) in counts {
            if filter.contains(['+', '#']) {
                fanout.wild.push((filter, count));
            } else {
                fanout.exact.insert(filter, count);
            }
        }
        fanout
    }

    /// How many deliveries one message to `topic` should make.
    pub fn of_topic(&self, topic: &str) -> u64 {
        let wild: u64 = self.wild.iter().filter(|(f, _)| matches(f, topic)).map(|(_, c)| c).sum();
        self.exact.get(topic).copied().unwrap_or(0) + wild
    }
}

fn qos(check: &Check, at: &str, q: Option<i64>) -> Result<u8, PlanError> {
    match q.unwrap_or(0) {
        q @ 0..=2 => Ok(q as u8),
        q => Err(check.err(format!("{at}.qos"), format!("qos is 0, 1 or 2, found {q}"))),
    }
}

fn clients(check: &Check, at: &str, c: Option<&str>) -> Result<Clients, PlanError> {
    match c {
        None => Ok(Clients { from: 0, to: u64::MAX, share: None }),
        Some(text) => Clients::parse(text).map_err(|m| check.err(format!("{at}.clients"), m)),
    }
}

fn needs_mqtt(check: &Check, at: &str, protocol: Protocol) -> Result<(), PlanError> {
    if protocol != Protocol::Mqtt {
        return Err(check.err(at, "messages need protocol = \"mqtt\""));
    }
    Ok(())
}

pub(super) fn subscribe_plan(
    check: &Check,
    at: &str,
    s: &SubscribeSection,
    protocol: Protocol,
) -> Result<SubscribePlan, PlanError> {
    needs_mqtt(check, at, protocol)?;
    let topic = TopicTemplate::parse(&s.topic).map_err(|m| check.err(format!("{at}.topic"), m))?;
    let timeout = match &s.timeout {
        None => Duration::from_secs(10),
        Some(t) => check.duration(&format!("{at}.timeout"), t)?,
    };
    Ok(SubscribePlan {
        topic,
        qos: qos(check, at, s.qos)?,
        clients: clients(check, at, s.clients.as_deref())?,
        timeout,
    })
}

pub(super) fn publish_plan(
    check: &Check,
    at: &str,
    p: &PublishSection,
    protocol: Protocol,
) -> Result<PublishPlan, PlanError> {
    needs_mqtt(check, at, protocol)?;
    let topic = TopicTemplate::parse(&p.topic).map_err(|m| check.err(format!("{at}.topic"), m))?;
    if topic.has_wildcard() {
        return Err(check.err(format!("{at}.topic"), "a message's topic has no wildcard (`+`, `#`): name one topic"));
    }
    let clients = clients(check, at, p.clients.as_deref())?;
    if clients.share.is_none() && topic.render(clients.from).is_none() {
        return Err(check.err(
            format!("{at}.topic"),
            format!("`{}` is negative for client {}: start `clients` higher or subtract less", p.topic, clients.from),
        ));
    }
    let rate = check.rate(&format!("{at}.rate"), p.rate)?;
    let count = match (p.count, &p.duration) {
        (Some(_), Some(_)) => return Err(check.err(at, "give `duration` or `count`, not both")),
        (None, None) => return Err(check.err(at, "give `duration` (e.g. \"10s\") or `count`")),
        (Some(n), None) if n <= 0 => {
            return Err(check.err(format!("{at}.count"), format!("count must be at least 1, found {n}")))
        }
        (Some(n), None) => n as u64,
        (None, Some(d)) => ((check.duration(&format!("{at}.duration"), d)?.as_secs_f64() * rate).round() as u64).max(1),
    };
    check.span(at, count, rate)?;
    let size = match p.size.unwrap_or(STAMP_LEN as i64) {
        s if s < STAMP_LEN as i64 => {
            return Err(check.err(
                format!("{at}.size"),
                format!(
                    "size {s} is below the {STAMP_LEN}-byte header every message carries (publisher, sequence \
                     number, send instant): use a size of at least {STAMP_LEN}"
                ),
            ))
        }
        s if s > MAX_SIZE as i64 => {
            return Err(check.err(format!("{at}.size"), format!("size {s} is over {MAX_SIZE} bytes")))
        }
        s => s as usize,
    };
    let max_inflight = match p.max_inflight.unwrap_or(16) {
        m @ 1..=65_535 => m as usize,
        m => return Err(check.err(format!("{at}.max_inflight"), format!("max_inflight is 1 to 65,535, found {m}"))),
    };
    let duration = |field: &str, v: &Option<String>, default: u64| match v {
        None => Ok(Duration::from_secs(default)),
        Some(t) => check.duration(&format!("{at}.{field}"), t),
    };
    Ok(PublishPlan {
        topic,
        qos: qos(check, at, p.qos)?,
        clients,
        rate,
        size,
        count,
        max_inflight,
        timeout: duration("timeout", &p.timeout, 10)?,
        drain: duration("drain", &p.drain, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_from_the_connection_number() {
        let t = |s: &str| TopicTemplate::parse(s).unwrap();
        assert_eq!(t("bench/{n}").render(7).as_deref(), Some("bench/7"));
        assert_eq!(t("bench/{n - 5000}").render(5007).as_deref(), Some("bench/7"));
        assert_eq!(t("bench/{n-5000}").render(4999), None, "negative");
        assert_eq!(t("b/{n + 2}/x/{n % 3}").render(10).as_deref(), Some("b/12/x/1"));
        assert_eq!(t("fan/out").render(3).as_deref(), Some("fan/out"));
        for bad in ["a/{m}", "a/{n * 2}", "a/{n % 0}", "a/{n", "a/{n - x}", ""] {
            assert!(TopicTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn fanout_counts_each_subscription_and_a_share_group_once() {
        let sub = |topic: &str, from, to| SubscribePlan {
            topic: TopicTemplate::parse(topic).unwrap(),
            qos: 1,
            clients: Clients { from, to, share: None },
            timeout: Duration::from_secs(1),
        };
        let subs =
            [sub("bench/{n}", 0, 100), sub("fan", 100, 150), sub("bench/#", 150, 152), sub("$share/g/in", 152, 160)];
        let fanout = Fanout::of(&subs, 1000);
        assert_eq!(fanout.of_topic("bench/7"), 3, "its own subscriber and two `bench/#`");
        assert_eq!(fanout.of_topic("fan"), 50);
        assert_eq!(fanout.of_topic("in"), 1, "one per share group");
        assert_eq!(fanout.of_topic("nobody"), 0);
        assert_eq!(Fanout::of(&subs, 50).of_topic("fan"), 0, "connections never opened subscribe nothing");
        assert_eq!(Clients::parse("0..5000"), Ok(Clients { from: 0, to: 5000, share: None }));
        assert!(Clients::parse("5..5").is_err() && Clients::parse("x").is_err() && Clients::parse("5..10%").is_err());
        assert_eq!(
            Clients::parse("50%..100%").unwrap().resolve(10_000),
            Clients { from: 5000, to: 10_000, share: None }
        );
        assert_eq!(Clients::parse("10%").unwrap().resolve(3000), Clients { from: 0, to: 300, share: None });
        assert!(
            Clients::parse("60%..50%").is_err() && Clients::parse("0%").is_err() && Clients::parse("101%").is_err()
        );
    }
}
