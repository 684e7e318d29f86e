//! What preflight judges a scenario against: the [`Environment`], read from this machine
//! (limits, /proc, the processes listening on the target's port) or built by the tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::descriptors::NofileRaise;
use crate::plan::{Plan, Sysctl, TargetSpec};
use crate::sources::{self, Sources};

/// What [`assess`](super::assess) judges a scenario against.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where the clients connect; `None` for an embedded target not started yet.
    pub target: Option<SocketAddr>,
    /// Whether the target listens on this machine (always, for an embedded target): its
    /// sockets then spend this machine's files and memory too.
    pub target_local: bool,
    /// The client sources the run will use ([`Plan::effective_sources`]).
    pub sources: Sources,
    /// This process's RLIMIT_NOFILE after [`descriptors::raise_nofile`].
    pub nofile: NofileRaise,
    /// The sysctls in force in the run's network namespace.
    pub limits: probe::Limits,
    /// Worker processes forced with `--workers N`; `None` lets sockcap decide.
    pub workers: Option<u64>,
    /// Files open machine-wide now (fs.file-nr), against fs.file-max.
    pub files_open: Option<u64>,
    /// MemAvailable, or the memory cgroup's headroom when lower, bytes.
    pub mem_available: Option<u64>,
    /// TIME_WAIT sockets in the run's namespace now (/proc/net/sockstat).
    pub time_wait_now: Option<u64>,
    /// Whether this process may pass fs.file-max (CAP_SYS_ADMIN; taken as euid 0).
    pub privileged: bool,
    /// The local target's listening sockets and the processes holding them; `None` when
    /// not looked up (an embedded or remote target) or when the lookup failed.
    pub listeners: Option<probe::Listeners>,
}

impl Environment {
    /// Gather the facts for `plan` from this machine. `target` is the resolved target
    /// (`None`: an embedded one not started yet); `nofile` comes from
    /// [`descriptors::raise_nofile`]; `workers` is `--workers N`.
    pub fn read(plan: &Plan, target: Option<SocketAddr>, nofile: NofileRaise, workers: Option<u64>) -> Environment {
        let host = probe::Limits::read();
        let limits = match &plan.netns {
            Some(sysctls) => namespace_limits(&host, sysctls),
            None => host,
        };
        let ports = limits.ip_local_port_range.unwrap_or(sources::DEFAULT_RANGE);
        let toward = target.unwrap_or(EMBEDDED_PLACEHOLDER);
        let sources = Sources::new(plan.effective_sources(toward, ports), ports);
        let embedded = plan.target == TargetSpec::Embedded;
        let target_local = embedded || target.is_some_and(|t| crate::socket::is_local(t.ip()));
        let listeners = match target {
            Some(t) if target_local && !embedded => probe::listeners_for(t).ok(),
            _ => None,
        };
        let time_wait_now = match plan.netns {
            Some(_) => Some(0), // a new namespace starts empty
            None => probe::SockStat::read().ok().map(|s| s.tcp_tw),
        };
        Environment {
            target,
            target_local,
            sources,
            nofile,
            limits,
            workers,
            files_open: probe::limits::files_open(),
            mem_available: probe::limits::mem_available(),
            time_wait_now,
            // SAFETY: geteuid has no preconditions and cannot fail.
            privileged: unsafe { libc::geteuid() } == 0,
            listeners,
        }
    }
}

/// Where an embedded target not started yet will listen, for the port budget (its port
/// is chosen when it starts).
pub(super) const EMBEDDED_PLACEHOLDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The sysctls of a private network namespace: the kernel's defaults for a new namespace
/// (the host's value where the default is sized from the machine), then the scenario's.
pub fn namespace_limits(host: &probe::Limits, sysctls: &[Sysctl]) -> probe::Limits {
    let mut limits = probe::Limits {
        ip_local_port_range: Some(sources::DEFAULT_RANGE),
        somaxconn: Some(4096),
        tcp_tw_reuse: Some(2),
        tcp_fin_timeout: Some(60),
        ..host.clone()
    };
    for sysctl in sysctls {
        let value = sysctl.value.as_str();
        match sysctl.name.as_str() {
            "net.ipv4.ip_local_port_range" => limits.ip_local_port_range = probe::limits::parse_port_range(value),
            "net.core.somaxconn" => limits.somaxconn = probe::limits::parse_number(value),
            "net.ipv4.tcp_max_tw_buckets" => limits.tcp_max_tw_buckets = probe::limits::parse_number(value),
            "net.ipv4.tcp_tw_reuse" => limits.tcp_tw_reuse = probe::limits::parse_number(value),
            "net.ipv4.tcp_fin_timeout" => limits.tcp_fin_timeout = probe::limits::parse_number(value),
            _ => {}
        }
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_namespace_starts_from_the_kernels_defaults() {
        let host =
            probe::Limits { ip_local_port_range: Some((1024, 65000)), somaxconn: Some(128), ..Default::default() };
        let sysctls = [Sysctl { name: "net.ipv4.ip_local_port_range".into(), value: "40000 40499".into() }];
        let ns = namespace_limits(&host, &sysctls);
        assert_eq!(ns.ip_local_port_range, Some((40_000, 40_499)));
        assert_eq!(ns.somaxconn, Some(4096));
    }
}
