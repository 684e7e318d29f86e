//! One phase of a plan: [`PhasePlan`], its action, what must hold when it ends, and the
//! sources and sysctls it sets.

use std::net::IpAddr;

use super::action::{churn_plan, close_plan, connect_plan, Action};
use super::error::{Check, PlanError};
use super::event::{phase_events, Event};
use super::sources::{check_family, parse_sources};
use super::sysctl::{sysctls, Sysctl};
use super::target::TargetSpec;
use super::traffic::{publish_plan, subscribe_plan};
use crate::expect::{Expectation, Metric};
use crate::protocol::Protocol;
use crate::scenario::PhaseSection;

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
    /// Events run when the phase starts, beside its action (`exec`, `fault`, `netem`).
    pub events: Vec<Event>,
    /// The phase has events and no action: it lasts as long as its events (its
    /// action is then a sleep of zero).
    pub events_only: bool,
}

impl PhasePlan {
    /// The phase's kind in reports: its action's, or its first event's when it has no action.
    pub fn kind(&self) -> &'static str {
        match self.events.first() {
            Some(event) if self.events_only => event.kind(),
            _ => self.action.kind(),
        }
    }
}

pub(super) fn phase_plan(
    check: &Check,
    i: usize,
    p: &PhaseSection,
    protocol: Protocol,
    target: TargetSpec,
    in_netns: bool,
) -> Result<PhasePlan, PlanError> {
    let at = format!("phase[{i}]");
    let name = p.name.clone().unwrap_or_else(|| format!("phase {}", i + 1));
    let actions = [
        p.connect.is_some(),
        p.hold.is_some(),
        p.close.is_some(),
        p.sleep.is_some(),
        p.churn.is_some(),
        p.subscribe.is_some(),
        p.publish.is_some(),
    ];
    let events = phase_events(check, &at, p.exec.as_ref(), p.fault.as_ref(), p.netem.as_ref(), target, in_netns)?;
    let events_only = !events.is_empty() && !actions.contains(&true);
    if actions.iter().filter(|a| **a).count() != 1 && !events_only {
        return Err(check.err(
            at,
            format!(
                "phase `{name}` needs exactly one of `connect`, `hold`, `close`, `sleep`, `churn`, `subscribe`, `publish` (or only \
                 events: `exec`, `fault`, `netem`); split it into several [[phase]]s"
            ),
        ));
    }
    let action = if events_only {
        Action::Sleep(std::time::Duration::ZERO)
    } else if let Some(c) = &p.connect {
        Action::Connect(connect_plan(check, &format!("{at}.connect"), c)?)
    } else if let Some(c) = &p.close {
        Action::Close(close_plan(check, &format!("{at}.close"), c, protocol)?)
    } else if let Some(c) = &p.churn {
        Action::Churn(churn_plan(check, &format!("{at}.churn"), c, protocol)?)
    } else if let Some(s) = &p.subscribe {
        Action::Subscribe(subscribe_plan(check, &format!("{at}.subscribe"), s, protocol)?)
    } else if let Some(s) = &p.publish {
        Action::Publish(publish_plan(check, &format!("{at}.publish"), s, protocol)?)
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
    Ok(PhasePlan { name, action, expect, sources, sysctls, events, events_only })
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
