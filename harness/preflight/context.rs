//! What every check reads: the plan, the environment, and the figures derived from them
//! once (the peak, the client and embedded target processes). Each check is a method on
//! [`Ctx`] in its own file.

use super::environment::Environment;
use crate::descriptors;
use crate::plan::{Plan, TargetSpec};

/// What every check reads.
pub(super) struct Ctx<'a> {
    pub(super) plan: &'a Plan,
    pub(super) env: &'a Environment,
    pub(super) peak: u64,
    pub(super) embedded: bool,
    /// Client workers needed under the soft limit.
    pub(super) needed: u64,
    /// Client workers used.
    pub(super) workers: u64,
    pub(super) target_workers: u64,
}

impl<'a> Ctx<'a> {
    /// The figures every check reads, for `plan` on `env`.
    pub(super) fn new(plan: &'a Plan, env: &'a Environment) -> Ctx<'a> {
        let peak = plan.peak_connections();
        let embedded = plan.target == TargetSpec::Embedded;
        let needed = descriptors::workers_needed(peak, env.nofile.soft_after);
        let workers = env.workers.unwrap_or(needed).max(1);
        // As `sockcap run` starts it: each process raises its soft limit to the hard one.
        let target_workers = if embedded {
            u64::from(plan.embedded.workers.max(crate::embedded::workers_for(peak, env.nofile.hard)))
        } else {
            0
        };
        Ctx { plan, env, peak, embedded, needed, workers, target_workers }
    }

    /// Sockets each connection makes on this machine: the client's, and the server's when
    /// the target is local.
    pub(super) fn sockets_per_connection(&self) -> u64 {
        if self.env.target_local {
            2
        } else {
            1
        }
    }

    pub(super) fn target_text(&self) -> String {
        match self.env.target {
            Some(t) if self.embedded => format!("the embedded target at {t}"),
            Some(t) => t.to_string(),
            None => "the embedded target".to_string(),
        }
    }
}
