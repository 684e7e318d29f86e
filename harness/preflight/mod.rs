//! Preflight: can this machine run a scenario, and what gives first? Every budget a run
//! spends is checked against what the machine allows, before any socket opens:
//!
//! - **descriptors**: worker processes needed under RLIMIT_NOFILE (one process holds
//!   its soft limit minus [`descriptors::RESERVE`] connections), and the embedded target's.
//! - **file_max**: fs.file-max minus the files open now, against the descriptors the run
//!   adds on this machine (client sockets, and server sockets when the target is local).
//! - **ports**: source addresses × ephemeral ports per destination ([`crate::sources`]).
//! - **memory**: kernel and user memory per connection against MemAvailable (or the
//!   memory cgroup's limit less its use, when lower: a container's, a pod's).
//! - **time_wait**: TIME_WAIT sockets the closes leave at once against
//!   net.ipv4.tcp_max_tw_buckets.
//! - **accept_queue**: the target's listen backlog against the fastest connect rate.
//! - **target_descriptors**: the descriptors a local target's processes may still open.
//!
//! Each [`Check`] has a verdict, its numbers, the connection count at which it gives, and
//! a fix. [`assess`] is pure: [`Environment::read`] gathers the facts (limits, /proc, the
//! processes listening on the target's port) and the tests construct them.
//!
//! Two sides. A **client-side** check (descriptors, file_max, ports, memory, time_wait) is
//! about sockcap and this machine: when one blocks, the run cannot measure anything
//! worth having, and `sockcap run` refuses it (exit 3, [`Assessment::client_blocker`]).
//! A **target-side** check (accept_queue, target_descriptors) is about the server under
//! test: finding where it gives is what a capacity test is for, so `sockcap run` only
//! notes it, while `sockcap preflight` counts it in its verdict (exit 3 when anything
//! blocks) and names the first bottleneck on either side.
//!
//! One file a check (named as the check), each a method on the `Ctx` (`context`) every check reads;
//! `environment` reads the machine, `check` holds the result types, `numbers` how the
//! sentences write numbers.

mod accept_queue;
mod check;
mod context;
mod descriptors;
mod environment;
mod file_max;
mod memory;
mod numbers;
mod ports;
mod target_descriptors;
#[cfg(test)]
mod testing;
mod time_wait;

use serde::Serialize;

use crate::plan::Plan;
use context::Ctx;

pub use accept_queue::{fastest_connect_rate, ACCEPT_QUEUE_MS};
pub use check::{Check, CheckName, Figures, Side, Verdict};
pub use environment::{namespace_limits, Environment};
pub use memory::{
    EMBEDDED_BYTES_PER_CONNECTION, HARNESS_BYTES_PER_CONNECTION, KERNEL_BYTES_PER_SOCKET, MEMORY_WARN_PERCENT,
    PROCESS_BASE_BYTES,
};
pub use numbers::{bytes, count};
pub use target_descriptors::TARGET_RESERVE;
pub use time_wait::time_wait_at_once;

/// Every check of a scenario against an [`Environment`].
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// The most connections open at once ([`Plan::peak_connections`]).
    pub peak_connections: u64,
    /// The most held open at once, churn left out ([`Plan::peak_held`]).
    pub peak_held: u64,
    /// Client worker processes the run uses (forced, or as many as needed).
    pub workers: u64,
    /// Embedded target processes needed (0 when the target is not embedded).
    pub target_workers: u64,
    /// The local target's processes, as found listening on its port.
    pub target_processes: Vec<probe::ProcessFds>,
    pub checks: Vec<Check>,
}

impl Assessment {
    /// True when no check blocks.
    pub fn fits(&self) -> bool {
        !self.checks.iter().any(|c| c.verdict == Verdict::Blocks)
    }

    /// The first bottleneck: of the blocking checks on either side, the one that gives at
    /// the fewest connections (the first in report order on a tie).
    pub fn first_bottleneck(&self) -> Option<&Check> {
        first_blocking(self.checks.iter())
    }

    /// The first bottleneck among the client-side checks: what makes `sockcap run`
    /// refuse to start (exit 3). Target-side blocks are left to the run to find.
    pub fn client_blocker(&self) -> Option<&Check> {
        first_blocking(self.checks.iter().filter(|c| c.side == Side::Client))
    }

    /// The check called `name`.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

fn first_blocking<'a>(checks: impl Iterator<Item = &'a Check>) -> Option<&'a Check> {
    checks.filter(|c| c.verdict == Verdict::Blocks).min_by_key(|c| c.gives_at.unwrap_or(0))
}

/// Judge `plan` against `env`.
pub fn assess(plan: &Plan, env: &Environment) -> Assessment {
    let ctx = Ctx::new(plan, env);
    let target_processes = env.listeners.as_ref().map(|l| l.processes.clone()).unwrap_or_default();
    let checks = vec![
        ctx.descriptors(),
        ctx.file_max(),
        ctx.ports(),
        ctx.memory(),
        ctx.time_wait(),
        ctx.accept_queue(),
        ctx.target_descriptors(),
    ];
    Assessment {
        peak_connections: ctx.peak,
        peak_held: plan.peak_held(),
        workers: ctx.workers,
        target_workers: ctx.target_workers,
        target_processes,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{close, connect, env, listeners, plan, LOCAL};
    use super::*;

    fn verdict(a: &Assessment, name: CheckName) -> Verdict {
        a.check(name).unwrap().verdict
    }

    #[test]
    fn a_modest_scenario_fits() {
        let plan = plan(LOCAL, &(connect(10_000, 1_000) + &close("rst")));
        let a = assess(&plan, &env(&plan));
        assert!(a.fits(), "{a:#?}");
        assert!(a.checks.iter().all(|c| c.verdict == Verdict::Fits), "{a:#?}");
        assert_eq!((a.peak_connections, a.workers, a.target_workers), (10_000, 1, 0));
        assert!(a.first_bottleneck().is_none() && a.client_blocker().is_none());
        let files = a.check(CheckName::FileMax).unwrap();
        // client and server sockets, and a reserve for the one worker
        assert_eq!(files.figures.get("files_needed"), Some(20_100));
        let target = a.check(CheckName::TargetDescriptors).unwrap();
        assert_eq!(target.gives_at, Some(1_000_000 - 20 - TARGET_RESERVE));
    }

    #[test]
    fn a_client_side_block_refuses_the_run_and_a_warning_does_not() {
        // too few workers forced
        let plan = self::plan(LOCAL, &connect(50_000, 10_000));
        let a = assess(&plan, &Environment { workers: Some(2), ..env(&plan) });
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Descriptors);
        assert!(!a.fits());
        // one source address for 40,000 connections
        let plan = self::plan(&format!("{LOCAL}\nsources = [\"127.0.0.2\"]"), &connect(40_000, 10_000));
        let a = assess(&plan, &env(&plan));
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::Ports);
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Ports);
        // fs.file-max, a block unless root
        let plan = self::plan(LOCAL, &connect(50_000, 10_000));
        let e = Environment { limits: probe::Limits { file_max: Some(100_000), ..env(&plan).limits }, ..env(&plan) };
        let e = Environment { files_open: Some(20_000), ..e };
        assert_eq!(assess(&plan, &e).client_blocker().unwrap().name, CheckName::FileMax);
        let root = assess(&plan, &Environment { privileged: true, ..e });
        assert_eq!(verdict(&root, CheckName::FileMax), Verdict::Warning);
        assert!(root.fits());
        // memory: blocks past what is available, warns near it
        let plan = self::plan(LOCAL, &connect(10_000, 1_000));
        let a = assess(&plan, &Environment { mem_available: Some(100_000_000), ..env(&plan) });
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Memory);
        let near = assess(&plan, &Environment { mem_available: Some(160_000_000), ..env(&plan) });
        assert_eq!(verdict(&near, CheckName::Memory), Verdict::Warning);
        assert!(near.fits());
        // TIME_WAIT past the buckets
        let plan = self::plan(LOCAL, &(connect(20_000, 10_000) + &close("fin")));
        let few = probe::Limits { tcp_max_tw_buckets: Some(10_000), ..env(&plan).limits };
        let a = assess(&plan, &Environment { limits: few, ..env(&plan) });
        assert_eq!(verdict(&a, CheckName::TimeWait), Verdict::Warning);
        assert!(a.fits(), "a warning does not block");
    }

    #[test]
    fn the_targets_descriptor_limit_is_the_first_bottleneck_but_not_the_clients() {
        let plan = plan(LOCAL, &connect(2_000, 1_000));
        let a = assess(&plan, &Environment { listeners: Some(listeners(1024)), ..env(&plan) });
        let target = a.check(CheckName::TargetDescriptors).unwrap();
        assert_eq!(target.verdict, Verdict::Blocks);
        assert_eq!(target.gives_at, Some(1024 - 20 - TARGET_RESERVE));
        assert!(target.summary.contains("mosquitto (pid 42): 20 open of 1,024"), "{target:?}");
        assert!(target.fix.as_deref().unwrap().contains("LimitNOFILE=3000"), "{target:?}");
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::TargetDescriptors);
        assert!(a.client_blocker().is_none(), "a run is not refused for the target's limit");
        assert!(!a.fits());

        // both sides blocking: the one that gives at fewer connections comes first
        let both = self::plan(&format!("{LOCAL}\nsources = [\"127.0.0.2\"]"), &connect(40_000, 1_000));
        let a = assess(&both, &Environment { listeners: Some(listeners(20_000)), ..env(&both) });
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::TargetDescriptors);
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Ports);
    }

    #[test]
    fn json_names_every_check() {
        let plan = plan(LOCAL, &connect(100, 100));
        let a = assess(&plan, &env(&plan));
        let json = serde_json::to_value(&a).unwrap();
        let names: Vec<&str> = json["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["descriptors", "file_max", "ports", "memory", "time_wait", "accept_queue", "target_descriptors"]
        );
        assert_eq!(json["checks"][0]["figures"]["peak_connections"], 100);
        assert_eq!(json["checks"][0]["verdict"], "fits");
        assert_eq!(json["target_processes"][0]["name"], "mosquitto");
    }
}
