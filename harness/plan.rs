//! A validated plan: a [`Scenario`] checked field by field, with durations parsed,
//! counts non-zero and addresses resolved. Every error names the file, the field
//! and the fix; the CLI turns a [`PlanError`] into exit code 2.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::shard::Shard;
use crate::expect::{Expectation, Metric};
use crate::protocol::Protocol;
use crate::scenario::{
    ChurnSection, CloseSection, ConnectSection, EmbeddedSection, MqttSection, PhaseSection, Scenario,
};
use crate::embedded::{ServeOptions, MAX_WORKERS};
use crate::protocol::OnEof;

/// A scenario that can run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The file it came from (for messages and reports).
    pub file: PathBuf,
    pub target: TargetSpec,
    pub protocol: Protocol,
    /// Client source addresses; empty means "sockcap decides" (see [`Plan::effective_sources`]).
    pub sources: Vec<IpAddr>,
    /// Census sampling interval during phases.
    pub sample_every: Duration,
    pub mqtt: MqttOptions,
    /// The embedded target's options, when `target = "embedded"` (its listen address is
    /// chosen when it starts).
    pub embedded: ServeOptions,
    /// What a client connection does when the target closes it.
    pub client_on_eof: OnEof,
    /// Run in a private network namespace with these sysctls (`[netns]` or `--netns`).
    pub netns: Option<Vec<Sysctl>>,
    pub phases: Vec<PhasePlan>,
    /// Which host's share of the scenario this plan describes ([`Plan::host_share`]);
    /// [`Shard::ALL`] for the whole scenario.
    pub host: Shard,
}

/// One per-namespace sysctl to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted name, `net.ipv4.tcp_tw_reuse`.
    pub name: String,
    pub value: String,
}

impl Sysctl {
    /// The file under /proc/sys.
    pub fn path(&self) -> PathBuf {
        Path::new("/proc/sys").join(self.name.replace('.', "/"))
    }
}

/// Where the clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// sockcap starts its own target as a child process on a free loopback port.
    Embedded,
    Addr(SocketAddr),
}

/// MQTT session options.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Template with `{n}` (connection number) and optionally `{worker}`.
    pub client_id: String,
    /// PINGREQ interval during holds; zero disables pings.
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// One phase: a name, an action, and what must hold when it ends.
#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub name: String,
    pub action: Action,
    pub expect: Vec<Expectation>,
    /// Source addresses for this phase's connections, when they differ from the scenario's.
    pub sources: Option<Vec<IpAddr>>,
    /// Sysctls set when the phase starts (in the run's private namespace).
    pub sysctls: Vec<Sysctl>,
}

/// What a phase does.
#[derive(Debug, Clone)]
pub enum Action {
    Connect(ConnectPlan),
    Hold(Duration),
    Close(ClosePlan),
    Sleep(Duration),
    Churn(ChurnPlan),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Connect(_) => "connect",
            Action::Hold(_) => "hold",
            Action::Close(_) => "close",
            Action::Sleep(_) => "sleep",
            Action::Churn(_) => "churn",
        }
    }

    /// The operations a connect or churn phase schedules (on one host: see
    /// [`Shard::share`]); `None` for the others (a close phase's depend on what is held).
    pub fn scheduled(&self) -> Option<u64> {
        match self {
            Action::Connect(c) => Some(c.count),
            Action::Churn(c) => Some(c.count),
            Action::Hold(_) | Action::Close(_) | Action::Sleep(_) => None,
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
    /// Handshakes in flight at once.
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

/// A scenario that cannot run, with where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub struct PlanError {
    pub file: PathBuf,
    /// The field at fault (`phase[2].connect.rate`), or empty for file-level errors.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: field `{}`: {}", self.file.display(), self.field, self.message)
        }
    }
}

/// The longest duration a phase may take.
const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rates accepted, per second.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 10_000_000.0;
/// Most handshakes in flight at once.
const MAX_INFLIGHT: i64 = 1_000_000;

/// Builds errors for one file.
struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError { file: self.file.to_path_buf(), field: field.into(), message: message.into() }
    }

    fn duration(&self, field: &str, text: &str) -> Result<Duration, PlanError> {
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(field, format!("`{text}` is not a duration ({e}); write e.g. \"30s\", \"500ms\" or \"2m\""))
        })?;
        if d > MAX_SPAN {
            return Err(self.err(field, format!("`{text}` is longer than the longest phase sockcap runs (7 days)")));
        }
        Ok(d)
    }

    fn rate(&self, field: &str, rate: f64) -> Result<f64, PlanError> {
        if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
            Ok(rate)
        } else {
            Err(self
                .err(field, format!("rate must be a number per second from {MIN_RATE} to {MAX_RATE}, found {rate:?}")))
        }
    }

    /// `count` operations at `rate` must fit in the longest phase.
    fn span(&self, field: &str, count: u64, rate: f64) -> Result<(), PlanError> {
        if count as f64 / rate > MAX_SPAN.as_secs_f64() {
            return Err(self.err(field, format!("{count} at {rate}/s takes longer than 7 days; raise the rate")));
        }
        Ok(())
    }
}

impl Plan {
    /// Read, parse and check a scenario file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        Plan::load_toward(path, None)
    }

    /// [`Plan::load`], the target replaced by `target` when given (`--target`): the
    /// scenario's own target is then not resolved (a host name of the cluster it was
    /// written for need not resolve here, and worker processes get the address their
    /// coordinator resolved).
    pub fn load_toward(path: &Path, target: Option<TargetSpec>) -> Result<Plan, PlanError> {
        let check = Check { file: path };
        let text =
            std::fs::read_to_string(path).map_err(|e| check.err("", format!("cannot read the scenario: {e}")))?;
        let mut scenario: Scenario = toml::from_str(&text).map_err(|e| toml_error(&check, &text, &e))?;
        if let Some(target) = target {
            scenario.target = match target {
                TargetSpec::Embedded => "embedded".to_string(),
                TargetSpec::Addr(addr) => addr.to_string(),
            };
        }
        Plan::from_scenario(path, scenario)
    }

    /// Parse and check scenario text; `path` is only used in messages.
    pub fn from_toml(path: &Path, text: &str) -> Result<Plan, PlanError> {
        let check = Check { file: path };
        let scenario: Scenario = toml::from_str(text).map_err(|e| toml_error(&check, text, &e))?;
        Plan::from_scenario(path, scenario)
    }

    fn from_scenario(path: &Path, s: Scenario) -> Result<Plan, PlanError> {
        let check = Check { file: path };
        let protocol = match s.protocol.as_str() {
            "tcp" => Protocol::Tcp,
            "mqtt" => Protocol::Mqtt,
            other => return Err(check.err("protocol", format!("`{other}` is not a protocol; use \"tcp\" or \"mqtt\""))),
        };
        let target = parse_target(&s.target).map_err(|m| check.err("target", m))?;
        let sources = match &s.sources {
            None => Vec::new(),
            Some(list) => parse_sources(list).map_err(|m| check.err("sources", m))?,
        };
        check_family(target, &sources).map_err(|m| check.err("sources", m))?;
        let sample_every = match &s.sample_every {
            None => Duration::from_secs(1),
            Some(t) => check.duration("sample_every", t)?,
        };
        if sample_every < Duration::from_millis(100) {
            return Err(check.err("sample_every", "sample at most every 100ms; a census of many sockets takes time"));
        }
        if s.mqtt.is_some() && protocol == Protocol::Tcp {
            return Err(
                check.err("mqtt", "an [mqtt] section needs protocol = \"mqtt\"; remove it or change the protocol")
            );
        }
        let mqtt = mqtt_options(&check, s.mqtt.as_ref())?;
        if s.embedded.is_some() && target != TargetSpec::Embedded {
            return Err(check
                .err("embedded", "an [embedded] section needs target = \"embedded\"; remove it or change the target"));
        }
        let embedded = embedded_options(&check, s.embedded.as_ref(), protocol)?;
        let client_on_eof = match s.client.as_ref().and_then(|c| c.on_eof.as_deref()) {
            None | Some("close") => OnEof::Close,
            Some("hold") => OnEof::Hold,
            Some(other) => {
                return Err(check.err("client.on_eof", format!("`{other}` is not a choice; use \"close\" or \"hold\"")))
            }
        };
        let netns = match &s.netns {
            None => None,
            Some(n) => Some(sysctls(&check, "netns.sysctl", &n.sysctl)?),
        };
        if netns.is_some() && target != TargetSpec::Embedded {
            return Err(check.err(
                "netns",
                "a private network namespace only reaches the embedded target; set target = \"embedded\" or remove [netns]",
            ));
        }
        if s.phases.is_empty() {
            return Err(check
                .err("phase", "the scenario has no [[phase]]; add one, e.g. connect = { count = 100, rate = 100 }"));
        }
        let phases = s
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| phase_plan(&check, i, p, protocol, target, netns.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            name: s.name,
            file: path.to_path_buf(),
            target,
            protocol,
            sources,
            sample_every,
            mqtt,
            embedded,
            client_on_eof,
            netns,
            phases,
            host: Shard::ALL,
        })
    }

    /// True when a close phase fills send buffers before closing.
    pub fn fills(&self) -> bool {
        self.phases.iter().any(|p| matches!(&p.action, Action::Close(c) if c.fill))
    }

    /// Replace the client source addresses (`--sources`, comma-separated items as in
    /// the scenario's `sources`).
    pub fn set_sources(&mut self, list: &str) -> Result<(), String> {
        let items: Vec<String> = list.split(',').map(str::to_string).collect();
        let sources = parse_sources(&items)?;
        check_family(self.target, &sources)?;
        self.sources = sources;
        Ok(())
    }

    /// The most connections open at once, assuming every connect succeeds (the
    /// descriptors a run needs).
    pub fn peak_connections(&self) -> u64 {
        self.peak(true)
    }

    /// The most connections open at once; with `churn` false, churn cycles are left out
    /// (spreading them over sources would hide the exhaustion a churn phase shows).
    fn peak(&self, churn: bool) -> u64 {
        let (mut held, mut peak) = (0u64, 0u64);
        for phase in &self.phases {
            match &phase.action {
                Action::Connect(c) => held += c.count,
                // Half-closed sockets stay open until the target closes: count them as held.
                Action::Close(c) if c.how == CloseMode::HalfClose => {}
                Action::Close(c) => held -= c.amount.of(held),
                Action::Hold(_) | Action::Sleep(_) => {}
                // A cycle closes its connection at once; at most about a second's worth is open.
                Action::Churn(c) if churn => peak = peak.max(held + (c.rate as u64).min(c.count)),
                Action::Churn(_) => {}
            }
            peak = peak.max(held);
        }
        peak
    }

    /// Connections started by the phases before phase `index`, in all shards together:
    /// the number of that phase's first connection.
    pub fn connections_before(&self, index: usize) -> u64 {
        let started = |p: &PhasePlan| match &p.action {
            Action::Connect(c) => c.count,
            Action::Churn(c) => c.count,
            Action::Close(_) | Action::Hold(_) | Action::Sleep(_) => 0,
        };
        self.phases.iter().take(index).map(started).sum()
    }

    /// The most connections held open at once, churn cycles left out: what the source
    /// ports must carry (see [`crate::sources`]).
    pub fn peak_held(&self) -> u64 {
        self.peak(false)
    }

    /// Client source addresses: as given, or chosen by [`crate::sources::auto`] (a
    /// block of its own for each host shard, so shards sharing one loopback never bind
    /// the same address and port).
    pub fn effective_sources(&self, target: SocketAddr, ports: (u16, u16)) -> Vec<IpAddr> {
        if !self.sources.is_empty() {
            return self.sources.clone();
        }
        crate::sources::auto(self.peak_held(), target, ports, self.host.index)
    }

    /// What one host of a sharded run does, for its budgets (descriptors, ports,
    /// memory, preflight): each phase's count is the host's share of it and each rate
    /// its part. The engine runs the whole plan's schedule with the host's
    /// [`Shard`]; this view only sizes it.
    pub fn host_share(&self, host: Shard) -> Plan {
        let part = f64::from(host.count);
        let mut view = self.clone();
        view.host = host;
        for phase in &mut view.phases {
            match &mut phase.action {
                Action::Connect(c) => {
                    c.count = host.share(c.count);
                    c.rate /= part;
                }
                Action::Churn(c) => {
                    c.count = host.share(c.count);
                    c.rate /= part;
                }
                Action::Close(c) => {
                    if let CloseAmount::Count(n) = &mut c.amount {
                        *n = host.share(*n);
                    }
                    c.rate /= part;
                }
                Action::Hold(_) | Action::Sleep(_) => {}
            }
        }
        view
    }
}

fn toml_error(check: &Check, text: &str, e: &toml::de::Error) -> PlanError {
    let location = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    let message = e.message().trim_end().to_string();
    let fix = if message.contains("unknown field") {
        " (remove or rename the key; the scenario reference is in README.md)"
    } else if message.contains("missing field") {
        " (add the key; the scenario reference is in README.md)"
    } else {
        ""
    };
    check.err("", format!("{}{message}{fix}", location.unwrap_or_default()))
}

/// `embedded`, `HOST:PORT` with an IP address, or `localhost:PORT`.
pub fn parse_target(text: &str) -> Result<TargetSpec, String> {
    let text = text.trim();
    if text == "embedded" {
        return Ok(TargetSpec::Embedded);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("`{text}` has port 0; name the port the target listens on"));
        }
        return Ok(TargetSpec::Addr(addr));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(TargetSpec::Addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
    }
    // A host name (a Kubernetes Service, say): resolved once, here; IPv4 first.
    let bad =
        || format!("`{text}` is not a target; write \"embedded\", \"127.0.0.1:1883\", \"[::1]:1883\" or \"HOST:PORT\"");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("`{text}`: the host name does not resolve here ({e}); check it, or give an address"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| TargetSpec::Addr(*a))
        .ok_or_else(|| format!("`{text}`: the host name resolves to no address"))
}

/// Source addresses must be of the target's family (an embedded target is IPv4 loopback).
fn check_family(target: TargetSpec, sources: &[IpAddr]) -> Result<(), String> {
    let v4 = match target {
        TargetSpec::Embedded => true,
        TargetSpec::Addr(a) => a.is_ipv4(),
    };
    match sources.iter().find(|s| s.is_ipv4() != v4) {
        Some(s) => Err(format!(
            "`{s}` is an {} address but the target is {}; use {} source addresses",
            if s.is_ipv4() { "IPv4" } else { "IPv6" },
            if v4 { "IPv4" } else { "IPv6" },
            if v4 { "IPv4" } else { "IPv6" }
        )),
        None => Ok(()),
    }
}

/// `["127.0.0.2", "127.0.0.10-127.0.0.20", "::1"]` → addresses.
pub fn parse_sources(list: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in list {
        let bad = || format!("`{item}` is not an address or an IPv4 range like \"127.0.0.2-127.0.0.40\"");
        match item.split_once('-') {
            None => out.push(item.trim().parse::<IpAddr>().map_err(|_| bad())?),
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a >= 65_536 {
                    return Err(format!("`{item}`: the range must go upward and hold at most 65,536 addresses"));
                }
                out.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
        }
    }
    if out.is_empty() {
        return Err("the list is empty; remove `sources` to let sockcap choose".into());
    }
    Ok(out)
}

fn mqtt_options(check: &Check, m: Option<&MqttSection>) -> Result<MqttOptions, PlanError> {
    let client_id = m.and_then(|m| m.client_id.clone()).unwrap_or_else(|| "sockcap-{worker}-{n}".into());
    if !client_id.contains("{n}") {
        return Err(check.err(
            "mqtt.client_id",
            format!("`{client_id}` has no `{{n}}`: every client would use the same id and the broker would drop all but one; add {{n}}"),
        ));
    }
    let stripped = client_id.replace("{n}", "").replace("{worker}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err(check.err("mqtt.client_id", "only `{n}` and `{worker}` may appear in braces"));
    }
    let keep_alive = match m.and_then(|m| m.keep_alive.as_deref()) {
        None => Duration::from_secs(30),
        Some(t) => check.duration("mqtt.keep_alive", t)?,
    };
    if keep_alive.as_secs() > u64::from(u16::MAX) {
        return Err(check.err("mqtt.keep_alive", "MQTT keep-alive is at most 65535s (18h12m15s)"));
    }
    Ok(MqttOptions {
        client_id,
        keep_alive,
        clean_session: m.and_then(|m| m.clean_session).unwrap_or(true),
        username: m.and_then(|m| m.username.clone()),
        password: m.and_then(|m| m.password.clone()),
    })
}

fn embedded_options(check: &Check, e: Option<&EmbeddedSection>, protocol: Protocol) -> Result<ServeOptions, PlanError> {
    let on_eof = match e.and_then(|e| e.on_eof.as_deref()) {
        None | Some("close") => OnEof::Close,
        Some("hold") => OnEof::Hold,
        Some(other) => {
            return Err(check.err("embedded.on_eof", format!("`{other}` is not a choice; use \"close\" or \"hold\"")))
        }
    };
    let backlog = match e.and_then(|e| e.backlog) {
        None => crate::embedded::DEFAULT_BACKLOG,
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
        Some(n) => return Err(check.err("embedded.backlog", format!("backlog must be 0 or more, found {n}"))),
    };
    let workers = match e.and_then(|e| e.workers) {
        None => 1,
        Some(n) if (1..=i64::from(MAX_WORKERS)).contains(&n) => n as u32,
        Some(n) => {
            let why = format!("the target runs in 1 to {MAX_WORKERS} processes, found {n}; write e.g. workers = 2");
            return Err(check.err("embedded.workers", why));
        }
    };
    let duration = |field: &str, value: Option<&String>| -> Result<Option<Duration>, PlanError> {
        value.map(|t| check.duration(&format!("embedded.{field}"), t)).transpose()
    };
    Ok(ServeOptions {
        listen: ServeOptions::default().listen,
        protocol,
        on_eof,
        backlog,
        accept: e.and_then(|e| e.accept).unwrap_or(true),
        defer_accept: duration("defer_accept", e.and_then(|e| e.defer_accept.as_ref()))?,
        read: e.and_then(|e| e.read).unwrap_or(true),
        shutdown_after: duration("shutdown_after", e.and_then(|e| e.shutdown_after.as_ref()))?,
        workers,
    })
}

fn phase_plan(
    check: &Check,
    i: usize,
    p: &PhaseSection,
    protocol: Protocol,
    target: TargetSpec,
    in_netns: bool,
) -> Result<PhasePlan, PlanError> {
    let at = format!("phase[{i}]");
    let name = p.name.clone().unwrap_or_else(|| format!("phase {}", i + 1));
    let actions = [p.connect.is_some(), p.hold.is_some(), p.close.is_some(), p.sleep.is_some(), p.churn.is_some()];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(check.err(
            at,
            format!(
                "phase `{name}` needs exactly one of `connect`, `hold`, `close`, `sleep`, `churn`; \
                 split it into several [[phase]]s"
            ),
        ));
    }
    let action = if let Some(c) = &p.connect {
        Action::Connect(connect_plan(check, &format!("{at}.connect"), c)?)
    } else if let Some(c) = &p.close {
        Action::Close(close_plan(check, &format!("{at}.close"), c, protocol)?)
    } else if let Some(c) = &p.churn {
        Action::Churn(churn_plan(check, &format!("{at}.churn"), c, protocol)?)
    } else if let Some(t) = &p.hold {
        Action::Hold(check.duration(&format!("{at}.hold"), t)?)
    } else {
        let t = p.sleep.as_deref().unwrap_or_default();
        Action::Sleep(check.duration(&format!("{at}.sleep"), t)?)
    };
    let mut expect = p
        .expect
        .iter()
        .map(|(k, v)| {
            let e = Expectation::parse(k, v).and_then(|e| known_counter(&e.metric).map(|()| e));
            e.map_err(|m| check.err(format!("{at}.expect.{k}"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !expect.iter().any(|e| matches!(e.metric, Metric::Errors(_))) {
        expect.push(Expectation::no_errors());
    }
    let sources = match &p.sources {
        None => None,
        Some(list) => Some(parse_sources(list).map_err(|m| check.err(format!("{at}.sources"), m))?),
    };
    if let Some(list) = &sources {
        check_family(target, list).map_err(|m| check.err(format!("{at}.sources"), m))?;
    }
    let sysctls = match &p.sysctl {
        None => Vec::new(),
        Some(_) if !in_netns => {
            return Err(check.err(
                format!("{at}.sysctl"),
                "sysctls are only set inside the run's own network namespace; add a [netns] section",
            ))
        }
        Some(map) => sysctls(check, &format!("{at}.sysctl"), map)?,
    };
    Ok(PhasePlan { name, action, expect, sources, sysctls })
}

/// A `kernel.<Counter>` expectation must name a counter this kernel has: a typo would
/// otherwise read as a zero delta and pass.
fn known_counter(metric: &Metric) -> Result<(), String> {
    // The kernel's counter names, read once.
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let Metric::Kernel(name) = metric else { return Ok(()) };
    let names =
        NAMES.get_or_init(|| probe::KernelCounters::read().map(|c| c.values.into_keys().collect()).unwrap_or_default());
    if names.is_empty() || names.contains(name) {
        return Ok(());
    }
    let lower = name.to_lowercase();
    let near: Vec<&str> = names
        .iter()
        .filter(|k| {
            let k = k.to_lowercase();
            k.contains(&lower[..lower.len().min(6)]) || lower.contains(&k)
        })
        .map(String::as_str)
        .take(5)
        .collect();
    let hint = if near.is_empty() { String::new() } else { format!(" (close: {})", near.join(", ")) };
    Err(format!("`{name}` is not a counter of /proc/net/snmp Tcp or /proc/net/netstat TcpExt{hint}"))
}

/// Sysctls a scenario may set: per-network-namespace ones only (`net.*`), named in
/// full (`net.ipv4.tcp_tw_reuse`) or by their last part (`tcp_tw_reuse`).
fn sysctls(
    check: &Check,
    at: &str,
    map: &std::collections::BTreeMap<String, toml::Value>,
) -> Result<Vec<Sysctl>, PlanError> {
    map.iter()
        .map(|(key, value)| {
            let field = format!("{at}.{key}");
            let name = resolve_sysctl(key).map_err(|m| check.err(&field, m))?;
            let value = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                other => {
                    return Err(
                        check.err(&field, format!("expected a number or a string, found a {}", other.type_str()))
                    )
                }
            };
            Ok(Sysctl { name, value })
        })
        .collect()
}

fn resolve_sysctl(key: &str) -> Result<String, String> {
    let dotted = key.replace('/', ".");
    let candidates: Vec<String> = if dotted.contains('.') {
        vec![dotted.clone()]
    } else {
        ["net.ipv4", "net.core", "net.ipv6", "net.netfilter"].iter().map(|d| format!("{d}.{dotted}")).collect()
    };
    if !dotted.starts_with("net.") && dotted.contains('.') {
        return Err(format!("`{key}` is not a network sysctl; only net.* sysctls belong to a namespace"));
    }
    candidates
        .into_iter()
        .find(|name| Path::new("/proc/sys").join(name.replace('.', "/")).is_file())
        .ok_or_else(|| format!("no sysctl `{key}` under /proc/sys/net; check the name (e.g. tcp_tw_reuse)"))
}

fn connect_plan(check: &Check, at: &str, c: &ConnectSection) -> Result<ConnectPlan, PlanError> {
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
    let max_inflight = c.max_inflight.unwrap_or(2000);
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

fn close_plan(check: &Check, at: &str, c: &CloseSection, protocol: Protocol) -> Result<ClosePlan, PlanError> {
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

fn churn_plan(check: &Check, at: &str, c: &ChurnSection, protocol: Protocol) -> Result<ChurnPlan, PlanError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
target = "127.0.0.1:1883"
protocol = "mqtt"
[mqtt]
keep_alive = "10s"
[[phase]]
name = "ramp"
connect = { count = 100, rate = 50 }
expect = { established = ">= 100" }
[[phase]]
hold = "2s"
[[phase]]
close = { how = "fin", rate = 100, fraction = 0.5 }
"#;

    fn load(text: &str) -> Result<Plan, PlanError> {
        Plan::from_toml(Path::new("s.toml"), text)
    }

    #[test]
    fn a_good_scenario_plans() {
        let plan = load(GOOD).unwrap();
        assert_eq!(plan.phases.len(), 3);
        assert_eq!(plan.phases[1].name, "phase 2");
        assert_eq!(plan.mqtt.keep_alive, Duration::from_secs(10));
        assert!(matches!(plan.phases[0].action, Action::Connect(ConnectPlan { count: 100, .. })));
        // errors == 0 is added where no error expectation is written
        assert!(plan.phases.iter().all(|p| p.expect.iter().any(|e| e.implicit)));
        assert_eq!(plan.peak_connections(), 100);
    }

    #[test]
    fn a_host_share_sizes_one_host_of_a_sharded_run() {
        let plan = load(GOOD).unwrap();
        let share = plan.host_share(Shard { index: 1, count: 3 });
        let Action::Connect(c) = &share.phases[0].action else { panic!("not a connect") };
        assert_eq!((c.count, c.rate), (33, 50.0 / 3.0));
        assert_eq!(share.peak_connections(), 33);
        assert_eq!(share.host, Shard { index: 1, count: 3 });
        assert_eq!(plan.host_share(Shard::ALL).peak_connections(), plan.peak_connections());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = load(&GOOD.replace("hold = \"2s\"", "hodl = \"2s\"")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("s.toml: line 12, column 1"), "{text}");
        assert!(text.contains("unknown field `hodl`"), "{text}");
    }

    #[test]
    fn bad_values_name_the_field_and_fix() {
        let err = load(&GOOD.replace("rate = 50", "rate = 0")).unwrap_err();
        assert_eq!(err.field, "phase[0].connect.rate");
        let err = load(&GOOD.replace("\"10s\"", "\"10 parsecs\"")).unwrap_err();
        assert_eq!(err.field, "mqtt.keep_alive");
        assert!(err.message.contains("30s"));
        let err = load(&GOOD.replace("\"fin\"", "\"slam\"")).unwrap_err();
        assert!(err.to_string().contains("field `phase[2].close.how`: `slam` is not a close mode"), "{err}");
        let err = load(&GOOD.replace("\">= 100\"", "\"lots\"")).unwrap_err();
        assert_eq!(err.field, "phase[0].expect.established");
        let err = load(&GOOD.replace("127.0.0.1:1883", "broker")).unwrap_err();
        assert_eq!(err.field, "target");
    }

    #[test]
    fn host_names_resolve_once() {
        // From /etc/hosts (no DNS query): any case of `localhost` is the loopback.
        let TargetSpec::Addr(addr) = parse_target("LocalHost:1883").unwrap() else { panic!("not an address") };
        assert!(addr.ip().is_loopback() && addr.port() == 1883, "{addr}");
        for bad in ["bro ker:1883", "broker:0", "broker:port", ":1883"] {
            assert!(parse_target(bad).unwrap_err().contains("HOST:PORT"), "{bad}");
        }
    }

    #[test]
    fn embedded_workers_default_to_one_and_stay_in_range() {
        let embedded = |section: &str| {
            load(&format!(
                "name = \"t\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n{section}\n[[phase]]\nhold = \"1s\"\n"
            ))
        };
        assert_eq!(embedded("").unwrap().embedded.workers, 1);
        assert_eq!(embedded("[embedded]\nworkers = 3").unwrap().embedded.workers, 3);
        for bad in [0, -1, 1025] {
            let err = embedded(&format!("[embedded]\nworkers = {bad}")).unwrap_err();
            assert_eq!(err.field, "embedded.workers");
            assert!(err.message.contains("1 to 1024"), "{err}");
        }
    }

    #[test]
    fn absurd_numbers_are_refused_not_crashed_on() {
        let err = load(&GOOD.replace("rate = 50", "rate = 1e-300")).unwrap_err();
        assert_eq!(err.field, "phase[0].connect.rate");
        let err = load(&GOOD.replace("rate = 50", "rate = 50, max_inflight = 4000000000000000000")).unwrap_err();
        assert_eq!(err.field, "phase[0].connect.max_inflight");
        let err = load(&GOOD.replace("hold = \"2s\"", "hold = \"1000y\"")).unwrap_err();
        assert_eq!(err.field, "phase[1].hold");
        let err = load(&GOOD.replace("count = 100, rate = 50", "count = 100000000, rate = 0.01")).unwrap_err();
        assert!(err.message.contains("longer than 7 days"), "{err}");
    }

    #[test]
    fn sources_must_match_the_target_family() {
        let text = GOOD.replace("[mqtt]", "sources = [\"::1\"]\n[mqtt]");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "sources");
    }

    #[test]
    fn kernel_counters_must_exist() {
        let err = load(&GOOD.replace("established = \">= 100\"", "\"kernel.ListenOverflowz\" = \"== 0\"")).unwrap_err();
        assert_eq!(err.field, "phase[0].expect.kernel.ListenOverflowz");
        assert!(load(&GOOD.replace("established = \">= 100\"", "\"kernel.ListenOverflows\" = \"== 0\"")).is_ok());
    }

    #[test]
    fn one_action_per_phase() {
        let err = load(&GOOD.replace("hold = \"2s\"", "hold = \"2s\"\nsleep = \"1s\"")).unwrap_err();
        assert_eq!(err.field, "phase[1]");
    }

    #[test]
    fn sources_and_ranges() {
        let list = vec!["127.0.0.2-127.0.0.4".to_string(), "::1".to_string()];
        let got = parse_sources(&list).unwrap();
        assert_eq!(got.len(), 4);
        assert!(parse_sources(&["127.0.0.9-127.0.0.2".to_string()]).is_err());
    }

    #[test]
    fn loopback_targets_spread_over_sources() {
        let mut plan = load(GOOD).unwrap();
        let target: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        assert!(plan.effective_sources(target, crate::sources::DEFAULT_RANGE).is_empty());
        if let Action::Connect(c) = &mut plan.phases[0].action {
            c.count = 30_000;
        }
        assert_eq!(plan.effective_sources(target, crate::sources::DEFAULT_RANGE).len(), 3);
    }
}
