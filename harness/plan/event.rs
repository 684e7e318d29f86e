//! Faults on purpose: the events a phase runs at its start, beside its action
//! (`exec`, `fault`, `netem`), checked from their scenario sections, and the
//! run-wide network emulation of `[netns] netem`.

use std::time::Duration;

use super::error::{Check, PlanError};
use super::target::TargetSpec;
use crate::scenario::{ExecSection, FaultSection, NetemSection};

/// Something a phase does at its start, alongside its action. Every event has a
/// deadline; the phase ends when its action and its events are done.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Run a command (no shell); a non-zero exit, a timeout or a spawn failure fails the phase.
    Exec(ExecPlan),
    /// Kill the embedded target's processes at once (SIGKILL) and start them again on
    /// the same port after this pause.
    RestartTarget(Duration),
    /// Replace the network emulation on the namespace's loopback.
    Netem(Netem),
}

impl Event {
    /// The event's key in a scenario: `exec`, `fault` or `netem`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exec(_) => "exec",
            Event::RestartTarget(_) => "fault",
            Event::Netem(_) => "netem",
        }
    }

    /// What runs, in words, for the report.
    pub fn describe(&self) -> String {
        match self {
            Event::Exec(e) => e.command.join(" "),
            Event::RestartTarget(pause) => format!("restart_target {}", humantime::format_duration(*pause)),
            Event::Netem(n) => format!("tc {}", n.tc_args().join(" ")),
        }
    }
}

/// `exec = { command, timeout }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    /// The program, then its arguments.
    pub command: Vec<String>,
    /// How long it may run before it and its process group are killed.
    pub timeout: Duration,
}

/// `netem = { delay, jitter, loss }`; all zero: no emulation (a heal).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Netem {
    pub delay: Duration,
    pub jitter: Duration,
    /// Packets dropped, percent (0 to 100).
    pub loss_percent: f64,
}

impl Netem {
    /// The arguments of `tc` that put this emulation on `lo` (in the current namespace).
    pub fn tc_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["qdisc", "replace", "dev", "lo", "root", "netem"].map(String::from).to_vec();
        if !self.delay.is_zero() {
            args.extend(["delay".to_string(), format!("{}us", self.delay.as_micros())]);
            if !self.jitter.is_zero() {
                args.push(format!("{}us", self.jitter.as_micros()));
            }
        }
        if self.loss_percent > 0.0 {
            args.extend(["loss".to_string(), format!("{}%", self.loss_percent)]);
        }
        args
    }

    /// The arguments of `nft` that drop `loss_percent` of the packets arriving on `lo`
    /// (in the current namespace), or take that away at 0: loss without the netem qdisc,
    /// for a kernel built without it (no delay is possible this way).
    pub fn nft_args(&self) -> Vec<String> {
        const TABLE: &str = "inet sockcap_netem";
        let rule = match (self.loss_percent * 100.0).round() as u32 {
            0 => return vec![format!("add table {TABLE}; delete table {TABLE}")],
            10_000.. => "drop".to_string(),
            n => format!("numgen random mod 10000 < {n} drop"),
        };
        vec![format!(
            "add table {TABLE}; flush table {TABLE}; add chain {TABLE} input {{ type filter hook input priority 0; }}; \
             add rule {TABLE} input iif lo {rule}"
        )]
    }
}

/// The default `exec` timeout.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest command line an `exec` may have: arguments, and bytes in all.
const MAX_ARGS: usize = 1024;
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// The longest pause of a target restart.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The events of one phase (at `at`, e.g. `phase[2]`), in the order they start.
pub(super) fn phase_events(
    check: &Check,
    at: &str,
    exec: Option<&ExecSection>,
    fault: Option<&FaultSection>,
    netem: Option<&NetemSection>,
    target: TargetSpec,
    in_netns: bool,
) -> Result<Vec<Event>, PlanError> {
    let mut events = Vec::new();
    if let Some(n) = netem {
        if !in_netns {
            return Err(check.err(
                format!("{at}.netem"),
                "network emulation is only set inside the run's own network namespace, never on the host; \
                 add a [netns] section (the embedded target)",
            ));
        }
        events.push(Event::Netem(netem_plan(check, &format!("{at}.netem"), n)?));
    }
    if let Some(f) = fault {
        let field = format!("{at}.fault.restart_target");
        let Some(pause) = &f.restart_target else {
            return Err(check.err(format!("{at}.fault"), "name the fault: `fault = { restart_target = \"2s\" }`"));
        };
        if target != TargetSpec::Embedded {
            return Err(check.err(
                field,
                "restart_target restarts sockcap's own target; set target = \"embedded\", or restart your \
                 target with `exec = { command = [...] }`",
            ));
        }
        let pause = check.duration(&field, pause)?;
        if pause > MAX_PAUSE {
            return Err(check.err(field, "the pause is longer than an hour; write e.g. \"2s\""));
        }
        events.push(Event::RestartTarget(pause));
    }
    if let Some(e) = exec {
        events.push(Event::Exec(exec_plan(check, &format!("{at}.exec"), e)?));
    }
    Ok(events)
}

fn exec_plan(check: &Check, at: &str, e: &ExecSection) -> Result<ExecPlan, PlanError> {
    let field = format!("{at}.command");
    if e.command.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(
            check.err(field, "the command is empty; write e.g. command = [\"systemctl\", \"restart\", \"mosquitto\"]")
        );
    }
    let bytes: usize = e.command.iter().map(String::len).sum();
    if e.command.len() > MAX_ARGS || bytes > MAX_COMMAND_BYTES {
        return Err(
            check.err(field, format!("the command is longer than {MAX_ARGS} arguments or 64 KiB; put it in a script"))
        );
    }
    if e.command.iter().any(|a| a.contains('\0')) {
        return Err(check.err(field, "an argument holds a NUL byte; remove it"));
    }
    let timeout = match &e.timeout {
        None => EXEC_TIMEOUT,
        Some(t) => check.duration(&format!("{at}.timeout"), t)?,
    };
    if timeout.is_zero() {
        return Err(check.err(format!("{at}.timeout"), "the timeout must be longer than zero, e.g. \"30s\""));
    }
    Ok(ExecPlan { command: e.command.clone(), timeout })
}

/// `[netns] netem`, or a phase's `netem`, checked.
pub(super) fn netem_plan(check: &Check, at: &str, n: &NetemSection) -> Result<Netem, PlanError> {
    let duration = |key: &str, text: &Option<String>| -> Result<Duration, PlanError> {
        let d = text.as_deref().map(|t| check.duration(&format!("{at}.{key}"), t)).transpose()?.unwrap_or_default();
        if d > MAX_PAUSE {
            return Err(check.err(format!("{at}.{key}"), "longer than an hour; write e.g. \"50ms\""));
        }
        Ok(d)
    };
    let (delay, jitter) = (duration("delay", &n.delay)?, duration("jitter", &n.jitter)?);
    if !jitter.is_zero() && delay.is_zero() {
        return Err(check.err(format!("{at}.jitter"), "jitter varies a delay; add one, e.g. delay = \"50ms\""));
    }
    let loss_percent = match &n.loss {
        None => 0.0,
        Some(text) => {
            let number = text.trim().strip_suffix('%').map(str::trim).and_then(|t| t.parse::<f64>().ok());
            match number {
                Some(p) if (0.0..=100.0).contains(&p) => p,
                _ => {
                    return Err(check.err(
                        format!("{at}.loss"),
                        format!("`{text}` is not a loss; write a percentage from 0% to 100%, e.g. \"1%\""),
                    ))
                }
            }
        }
    };
    Ok(Netem { delay, jitter, loss_percent })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::Plan;

    fn load(target: &str, netns: bool, phase: &str) -> Result<Plan, PlanError> {
        let netns = if netns { "[netns]\n" } else { "" };
        Plan::from_toml(
            Path::new("s.toml"),
            &format!("name = \"t\"\ntarget = \"{target}\"\nprotocol = \"tcp\"\n{netns}[[phase]]\n{phase}\n"),
        )
    }

    #[test]
    fn events_run_beside_an_action_or_alone() {
        let plan = load("embedded", false, "hold = \"3s\"\nfault = { restart_target = \"2s\" }").unwrap();
        assert_eq!(plan.phases[0].events, [Event::RestartTarget(Duration::from_secs(2))]);
        assert_eq!(plan.phases[0].kind(), "hold");
        let plan = load("127.0.0.1:1", false, "exec = { command = [\"true\"] }").unwrap();
        let Event::Exec(e) = &plan.phases[0].events[0] else { panic!("not an exec") };
        assert_eq!((e.command.as_slice(), e.timeout), (["true".to_string()].as_slice(), EXEC_TIMEOUT));
        assert_eq!(plan.phases[0].kind(), "exec");
        let err = load("127.0.0.1:1", false, "").unwrap_err();
        assert!(err.message.contains("`exec`, `fault`, `netem`"), "{err}");
    }

    #[test]
    fn bad_events_name_the_field_and_the_fix() {
        let err = load("127.0.0.1:1", false, "fault = { restart_target = \"2s\" }").unwrap_err();
        assert_eq!(err.field, "phase[0].fault.restart_target");
        assert!(err.message.contains("target = \"embedded\""), "{err}");
        let err = load("embedded", false, "netem = { loss = \"100%\" }").unwrap_err();
        assert_eq!(err.field, "phase[0].netem");
        assert!(err.message.contains("[netns]"), "{err}");
        let err = load("embedded", false, "exec = { command = [] }").unwrap_err();
        assert_eq!(err.field, "phase[0].exec.command");
        let err = load("embedded", false, "exec = { command = [\"x\"], timeout = \"soon\" }").unwrap_err();
        assert_eq!(err.field, "phase[0].exec.timeout");
        let err = load("embedded", true, "netem = { loss = \"lots\" }").unwrap_err();
        assert_eq!(err.field, "phase[0].netem.loss");
        let err = load("embedded", true, "netem = { jitter = \"1ms\" }").unwrap_err();
        assert_eq!(err.field, "phase[0].netem.jitter");
    }

    #[test]
    fn netem_becomes_tc_arguments() {
        let plan = load("embedded", true, "netem = { delay = \"50ms\", jitter = \"10ms\", loss = \"1.5%\" }").unwrap();
        let Event::Netem(n) = &plan.phases[0].events[0] else { panic!("not netem") };
        assert_eq!(n.tc_args().join(" "), "qdisc replace dev lo root netem delay 50000us 10000us loss 1.5%");
        assert_eq!(Netem::default().tc_args().join(" "), "qdisc replace dev lo root netem");
        let partition = Netem { loss_percent: 100.0, ..Netem::default() };
        assert!(partition.nft_args()[0].ends_with("add rule inet sockcap_netem input iif lo drop"));
        let some = Netem { loss_percent: 1.5, ..Netem::default() };
        assert!(some.nft_args()[0].ends_with("iif lo numgen random mod 10000 < 150 drop"));
        assert_eq!(Netem::default().nft_args(), ["add table inet sockcap_netem; delete table inet sockcap_netem"]);
    }
}
