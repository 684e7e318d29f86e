//! A validated plan: a [`Scenario`] checked field by field, with durations parsed,
//! counts non-zero and addresses resolved. Every error names the file, the field
//! and the fix; the CLI turns a [`PlanError`] into exit code 2.
//!
//! One concern a file: `target` (where the clients connect), `sources` (client source
//! addresses), `sysctl` (per-namespace sysctls), `mqtt` (session options), `embedded`
//! (the embedded target's options), `reconnect` (the reconnect policy), `phase` and `action` (what each phase does),
//! `error` ([`PlanError`] and the checks every section shares). [`Plan`] and its loading
//! are here.

mod action;
pub mod caps;
mod embedded;
mod error;
mod event;
mod mqtt;
mod phase;
mod reconnect;
mod sources;
mod sysctl;
mod target;
mod tls;
pub mod traffic;
mod validity;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{OnEof, Protocol};
use crate::scenario::Scenario;
use crate::shard::Shard;

pub use action::{Action, ChurnPlan, CloseAmount, CloseMode, ClosePlan, ConnectPlan, DEFAULT_MAX_INFLIGHT};
pub use embedded::EmbeddedPlan;
pub use error::PlanError;
pub use event::{Event, ExecPlan, Netem};
pub use mqtt::MqttOptions;
pub use phase::PhasePlan;
pub use reconnect::{draw, Jitter, ReconnectPolicy};
pub use sources::parse_sources;
pub use sysctl::Sysctl;
pub use target::{parse_target, TargetSpec};
pub use tls::TransportPlan;
pub use validity::ValidityLimits;

use embedded::embedded_plan;
use error::Check;
use mqtt::mqtt_options;
use phase::phase_plan;
use reconnect::reconnect_policy;
use sources::check_family;
use sysctl::sysctls;
use tls::transport_plan;

/// A scenario that can run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The file it came from (for messages and reports).
    pub file: PathBuf,
    pub target: TargetSpec,
    pub protocol: Protocol,
    /// `transport` and `[tls]`: TCP, or TLS with its one client config.
    pub transport: TransportPlan,
    /// Client source addresses; empty means "sockcap decides" (see [`Plan::effective_sources`]).
    pub sources: Vec<IpAddr>,
    /// Census sampling interval during phases.
    pub sample_every: Duration,
    pub mqtt: MqttOptions,
    /// The embedded target's options, when `target = "embedded"` (its listen address is
    /// chosen when it starts).
    pub embedded: EmbeddedPlan,
    /// What a client connection does when the target closes it.
    pub client_on_eof: OnEof,
    /// How a lost connection comes back (`[client] reconnect`); `None`: it stays lost.
    pub reconnect: Option<ReconnectPolicy>,
    /// Run in a private network namespace with these sysctls (`[netns]` or `--netns`).
    pub netns: Option<Vec<Sysctl>>,
    /// Network emulation on the namespace's loopback for the whole run (`[netns] netem`).
    pub netem: Option<Netem>,
    /// `[validity]`: when the run is invalid.
    pub validity: ValidityLimits,
    pub phases: Vec<PhasePlan>,
    /// Which host's share of the scenario this plan describes ([`Plan::host_share`]);
    /// [`Shard::ALL`] for the whole scenario.
    pub host: Shard,
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
        let text = caps::read_scenario(&check, path)?;
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
        caps::check_scenario(&check, &s)?;
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
        let transport =
            transport_plan(&check, s.transport.as_deref(), s.tls.as_ref(), s.ws.as_ref(), &s.target, target)?;
        if s.embedded.is_some() && target != TargetSpec::Embedded {
            return Err(check
                .err("embedded", "an [embedded] section needs target = \"embedded\"; remove it or change the target"));
        }
        let embedded = embedded_plan(&check, s.embedded.as_ref())?;
        let client_on_eof = match s.client.as_ref().and_then(|c| c.on_eof.as_deref()) {
            None | Some("close") => OnEof::Close,
            Some("hold") => OnEof::Hold,
            Some(other) => {
                return Err(check.err("client.on_eof", format!("`{other}` is not a choice; use \"close\" or \"hold\"")))
            }
        };
        let reconnect = reconnect_policy(&check, s.client.as_ref().and_then(|c| c.reconnect.as_ref()))?;
        let netem = match s.netns.as_ref().and_then(|n| n.netem.as_ref()) {
            None => None,
            Some(n) => Some(event::netem_plan(&check, "netns.netem", n)?),
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
        let validity = validity::validity_limits(&check, s.validity.as_ref())?;
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
        // The traffic loop (engine/connection/active.rs) reads the kernel's queue itself:
        // messages over TLS or WebSocket are not built yet.
        let traffic = phases.iter().position(|p| matches!(p.action, Action::Subscribe(_) | Action::Publish(_)));
        if let (Some(i), false) = (traffic, transport.transport == crate::transport::Transport::Tcp) {
            return Err(check.err(
                format!("phase[{i}]"),
                "subscribe and publish run over transport = \"tcp\" only (messages over TLS and WebSocket are \
                 not built yet); remove `transport` or this phase",
            ));
        }
        Ok(Plan {
            name: s.name,
            file: path.to_path_buf(),
            target,
            protocol,
            transport,
            sources,
            sample_every,
            mqtt,
            embedded,
            client_on_eof,
            reconnect,
            netns,
            netem,
            validity,
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

    /// Every source address (the scenario's and each phase's) is this machine's (see
    /// [`sources::first_foreign`]). Checked before any connect: a foreign address fails
    /// every bind with EADDRNOTAVAIL, which is not the ports running out. `flag`: the
    /// scenario's list came from `--sources`.
    pub fn check_sources_here(&self, flag: bool) -> Result<(), PlanError> {
        let check = Check { file: &self.file };
        let whole = (if flag { "--sources" } else { "sources" }.to_string(), &self.sources);
        let phases = self.phases.iter().enumerate();
        let lists = std::iter::once(whole)
            .chain(phases.filter_map(|(i, p)| p.sources.as_ref().map(|s| (format!("phase[{i}].sources"), s))));
        for (field, list) in lists {
            if let Some(ip) = sources::first_foreign(list, self.netns.is_some()) {
                return Err(check.err(field, sources::foreign(ip, self.netns.is_some())));
            }
        }
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
                Action::Hold(_) | Action::Sleep(_) | Action::Subscribe(_) | Action::Publish(_) => {}
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
            Action::Subscribe(_) | Action::Publish(_) => 0,
        };
        self.phases.iter().take(index).map(started).sum()
    }

    /// Where phase `index`'s operations continue a run-wide count, over all shards: for a
    /// connect phase, the connections opened to hold by the phases before it; for a close
    /// by count, the closes by count before it; 0 otherwise. Each shard's share of the
    /// phase is taken from there ([`Shard::offset_by`]): a shard then holds every
    /// `count`-th connection in the order they were opened, and a close by count (oldest
    /// first) takes from each shard exactly what a single process would close of its
    /// connections. Connection numbers (`{n}`) are [`Plan::connections_before`] plus the
    /// operation's number within the phase, whichever shard runs it.
    pub fn first_operation(&self, index: usize) -> u64 {
        let Some(phase) = self.phases.get(index) else { return 0 };
        let counted = |p: &PhasePlan| match (&phase.action, &p.action) {
            (Action::Connect(_), Action::Connect(c)) => c.count,
            (Action::Close(_), Action::Close(ClosePlan { amount: CloseAmount::Count(n), .. })) => *n,
            _ => 0,
        };
        self.phases.iter().take(index).map(counted).sum()
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
                Action::Hold(_) | Action::Sleep(_) | Action::Subscribe(_) => {}
                Action::Publish(p) => {
                    p.count = host.share(p.count);
                    p.rate /= part;
                }
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
    fn a_reconnect_policy_is_read_from_the_client_section() {
        assert_eq!(load(GOOD).unwrap().reconnect, None);
        let text = GOOD.replace("[mqtt]", "[client]\nreconnect = { backoff = \"1s..4s\", max_attempts = 3 }\n[mqtt]");
        let p = load(&text).unwrap().reconnect.unwrap();
        assert_eq!(
            (p.floor, p.ceiling, p.jitter, p.max_attempts),
            (Duration::from_secs(1), Duration::from_secs(4), Jitter::Full, Some(3))
        );
        let err = load(&text.replace("max_attempts", "attempts")).unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
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
    fn loopback_targets_spread_over_sources() {
        let mut plan = load(GOOD).unwrap();
        let target: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        assert!(plan.effective_sources(target, crate::sources::DEFAULT_RANGE).is_empty());
        if let Action::Connect(c) = &mut plan.phases[0].action {
            c.count = 30_000;
        }
        assert_eq!(plan.effective_sources(target, crate::sources::DEFAULT_RANGE).len(), 3);
    }

    #[test]
    fn messages_run_over_tcp_only() {
        let traffic = GOOD
            .replace("[[phase]]\nhold = \"2s\"", "[[phase]]\nsubscribe = { topic = \"t/{n}\", clients = \"0..10\" }");
        assert!(load(&traffic).is_ok(), "over TCP");
        let over_tls = traffic.replacen("\n[", "\ntransport = \"tls\"\n[tls]\ninsecure = true\n[", 1);
        let err = load(&over_tls).unwrap_err();
        assert_eq!(err.field, "phase[1]", "{err}");
        assert!(err.message.contains("transport = \"tcp\" only"), "{err}");
    }
}
