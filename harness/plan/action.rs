//! What a phase does: [`Action`] (connect, hold, close, sleep, churn) and the plans of
//! the actions that take options, checked from their scenario sections.

use std::time::Duration;

use super::error::{Check, PlanError};
use super::traffic::{PublishPlan, SubscribePlan};
use crate::protocol::Protocol;
use crate::scenario::{ChurnSection, CloseSection, ConnectSection};

/// What a phase does.
#[derive(Debug, Clone)]
pub enum Action {
    Connect(ConnectPlan),
    Hold(Duration),
    Close(ClosePlan),
    Sleep(Duration),
    Churn(ChurnPlan),
    Subscribe(SubscribePlan),
    Publish(PublishPlan),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Connect(_) => "connect",
            Action::Hold(_) => "hold",
            Action::Close(_) => "close",
            Action::Sleep(_) => "sleep",
            Action::Churn(_) => "churn",
            Action::Subscribe(_) => "subscribe",
            Action::Publish(_) => "publish",
        }
    }

    /// The operations a connect or churn phase schedules (on one host: see
    /// [`Shard::share`]); `None` for the others (a close phase's depend on what is held).
    pub fn scheduled(&self) -> Option<u64> {
        match self {
            Action::Connect(c) => Some(c.count),
            Action::Churn(c) => Some(c.count),
            Action::Hold(_) | Action::Close(_) | Action::Sleep(_) => None,
            Action::Subscribe(_) | Action::Publish(_) => None,
        }
    }
}

/// Open `count` connections at `rate` per second, open loop.
#[derive(Debug, Clone)]
pub struct ConnectPlan {
    pub count: u64,
    pub rate: f64,
    /// From each connection's scheduled instant to its finished handshake.
    pub timeout: Duration,
    /// Handshakes in flight at once, in each worker process.
    pub max_inflight: usize,
    /// Wait for every connect's outcome before the phase ends (false: end once all started).
    pub wait: bool,
}

/// Connect and close at once, in a loop, at `rate` per second: the TIME_WAIT
/// exhaustion reproducer.
#[derive(Debug, Clone)]
pub struct ChurnPlan {
    pub rate: f64,
    /// How many cycles: `rate × duration`, or a count.
    pub count: u64,
    pub how: CloseMode,
    /// Handshake timeout from the scheduled instant.
    pub timeout: Duration,
}

/// Close held connections at `rate` per second.
#[derive(Debug, Clone)]
pub struct ClosePlan {
    pub how: CloseMode,
    pub rate: f64,
    pub amount: CloseAmount,
    /// How long a close waits for the target's FIN, where the mode waits for it.
    pub timeout: Duration,
    /// Fill the send buffer before closing.
    pub fill: bool,
}

/// How a connection is closed, and the state each mode leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseMode {
    /// The client closes first (shutdown, then waits for the target's FIN): client TIME_WAIT.
    Fin,
    /// SO_LINGER 0 then close: RST, no TIME_WAIT anywhere.
    Rst,
    /// MQTT DISCONNECT; the broker closes first: server TIME_WAIT.
    MqttDisconnect,
    /// shutdown(write), keep reading: client FIN_WAIT_2 / server CLOSE_WAIT until the target closes.
    HalfClose,
}

impl CloseMode {
    pub const NAMES: &'static str = "fin, rst, mqtt-disconnect, half-close";

    pub fn parse(s: &str) -> Option<CloseMode> {
        match s {
            "fin" => Some(CloseMode::Fin),
            "rst" => Some(CloseMode::Rst),
            "mqtt-disconnect" => Some(CloseMode::MqttDisconnect),
            "half-close" => Some(CloseMode::HalfClose),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CloseMode::Fin => "fin",
            CloseMode::Rst => "rst",
            CloseMode::MqttDisconnect => "mqtt-disconnect",
            CloseMode::HalfClose => "half-close",
        }
    }
}

/// How many held connections a close phase closes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CloseAmount {
    All,
    Count(u64),
    /// A fraction of those held when the phase starts, in (0, 1].
    Fraction(f64),
}

impl CloseAmount {
    /// How many of `held` connections this closes.
    pub fn of(self, held: u64) -> u64 {
        match self {
            CloseAmount::All => held,
            CloseAmount::Count(n) => n.min(held),
            CloseAmount::Fraction(f) => ((held as f64) * f).round() as u64,
        }
    }
}

/// Most handshakes in flight at once.
const MAX_INFLIGHT: i64 = 1_000_000;
/// Handshakes in flight at once in a worker process when `max_inflight` is not given;
/// also the bound on a churn phase's cycles in flight.
pub const DEFAULT_MAX_INFLIGHT: i64 = 2000;

pub(super) fn connect_plan(check: &Check, at: &str, c: &ConnectSection) -> Result<ConnectPlan, PlanError> {
    if c.count <= 0 {
        return Err(check.err(format!("{at}.count"), format!("count must be at least 1, found {}", c.count)));
    }
    let timeout = match &c.timeout {
        None => Duration::from_secs(10),
        Some(t) => check.duration(&format!("{at}.timeout"), t)?,
    };
    if timeout.is_zero() {
        return Err(check.err(format!("{at}.timeout"), "the handshake timeout must be longer than zero"));
    }
    let max_inflight = c.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT);
    if !(1..=MAX_INFLIGHT).contains(&max_inflight) {
        return Err(check.err(format!("{at}.max_inflight"), format!("max_inflight must be 1 to {MAX_INFLIGHT}")));
    }
    let rate = check.rate(&format!("{at}.rate"), c.rate)?;
    check.span(&format!("{at}.rate"), c.count as u64, rate)?;
    Ok(ConnectPlan {
        count: c.count as u64,
        rate,
        timeout,
        max_inflight: max_inflight as usize,
        wait: c.wait.unwrap_or(true),
    })
}

pub(super) fn close_plan(
    check: &Check,
    at: &str,
    c: &CloseSection,
    protocol: Protocol,
) -> Result<ClosePlan, PlanError> {
    let how = CloseMode::parse(&c.how).ok_or_else(|| {
        check.err(format!("{at}.how"), format!("`{}` is not a close mode; use one of {}", c.how, CloseMode::NAMES))
    })?;
    if how == CloseMode::MqttDisconnect && protocol != Protocol::Mqtt {
        return Err(check.err(format!("{at}.how"), "mqtt-disconnect needs protocol = \"mqtt\"; use fin or rst for tcp"));
    }
    let amount = match (c.count, c.fraction) {
        (Some(_), Some(_)) => {
            return Err(check.err(at, "give `count` or `fraction`, not both"));
        }
        (Some(n), None) if n <= 0 => {
            return Err(check.err(format!("{at}.count"), format!("count must be at least 1, found {n}")));
        }
        (Some(n), None) => CloseAmount::Count(n as u64),
        (None, Some(f)) if !(f > 0.0 && f <= 1.0) => {
            return Err(check.err(format!("{at}.fraction"), format!("fraction must be in (0, 1], found {f}")));
        }
        (None, Some(f)) => CloseAmount::Fraction(f),
        (None, None) => CloseAmount::All,
    };
    let timeout = match &c.timeout {
        None => Duration::from_secs(5),
        Some(t) => check.duration(&format!("{at}.timeout"), t)?,
    };
    let rate = check.rate(&format!("{at}.rate"), c.rate)?;
    if let CloseAmount::Count(n) = amount {
        check.span(&format!("{at}.rate"), n, rate)?;
    }
    Ok(ClosePlan { how, rate, amount, timeout, fill: c.fill.unwrap_or(false) })
}

pub(super) fn churn_plan(
    check: &Check,
    at: &str,
    c: &ChurnSection,
    protocol: Protocol,
) -> Result<ChurnPlan, PlanError> {
    let rate = check.rate(&format!("{at}.rate"), c.rate)?;
    let count = match (c.count, &c.duration) {
        (Some(_), Some(_)) => return Err(check.err(at, "give `duration` or `count`, not both")),
        (None, None) => return Err(check.err(at, "give `duration` (e.g. \"3s\") or `count`")),
        (Some(n), None) if n <= 0 => {
            return Err(check.err(format!("{at}.count"), format!("count must be at least 1, found {n}")))
        }
        (Some(n), None) => n as u64,
        (None, Some(d)) => {
            let d = check.duration(&format!("{at}.duration"), d)?;
            ((d.as_secs_f64() * rate).round() as u64).max(1)
        }
    };
    let how = match c.how.as_deref() {
        None => CloseMode::Fin,
        Some(h) => CloseMode::parse(h).ok_or_else(|| {
            check.err(format!("{at}.how"), format!("`{h}` is not a close mode; use one of {}", CloseMode::NAMES))
        })?,
    };
    if how == CloseMode::MqttDisconnect && protocol != Protocol::Mqtt {
        return Err(check.err(format!("{at}.how"), "mqtt-disconnect needs protocol = \"mqtt\"; use fin or rst for tcp"));
    }
    let timeout = match &c.timeout {
        None => Duration::from_secs(10),
        Some(t) => check.duration(&format!("{at}.timeout"), t)?,
    };
    check.span(&format!("{at}.rate"), count, rate)?;
    Ok(ChurnPlan { rate, count, how, timeout })
}
