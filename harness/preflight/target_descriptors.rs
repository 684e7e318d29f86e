//! The **target_descriptors** check: the descriptors a local target's processes may
//! still open.

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::{count, limit, plural};
use crate::descriptors;
use crate::printable::printable;

/// Descriptors a target process is taken to keep for itself (standard streams, log,
/// config, listeners): an allowance, not a reading; the check shows each process's
/// own open count and limit, read from /proc, beside it.
pub const TARGET_RESERVE: u64 = 10;

impl Ctx<'_> {
    pub(super) fn target_descriptors(&self) -> Check {
        let mut check = Check::new(CheckName::TargetDescriptors, Side::Target);
        if self.embedded {
            let per_process = descriptors::per_process(self.env.nofile.soft_after);
            check
                .figures
                .add("target_workers", Some(self.target_workers))
                .add("connections_per_process", Some(per_process));
            let summary = format!(
                "the embedded target runs {} process{} of at most {} connections each (they inherit RLIMIT_NOFILE {})",
                self.target_workers,
                plural(self.target_workers, "es"),
                count(per_process),
                count(self.env.nofile.soft_after)
            );
            return check.judged(Verdict::Fits, summary, None);
        }
        let target = self.target_text();
        if !self.env.target_local {
            let why = format!("{target} is on another machine: its descriptor limit cannot be read from here");
            return check.judged(Verdict::Skipped, why, None);
        }
        let Some(listeners) = &self.env.listeners else {
            let why = format!("the processes listening at {target} could not be looked up");
            return check.judged(Verdict::Skipped, why, None);
        };
        if listeners.sockets.is_empty() {
            let why = format!("nothing listens at {target}: the run will get `refused`");
            return check.judged(Verdict::Warning, why, Some("start the target first".into()));
        }
        if listeners.processes.is_empty() {
            let why = format!(
                "{} socket{} listen{} at {target}, but no process holding {} could be read",
                listeners.sockets.len(),
                plural(listeners.sockets.len() as u64, "s"),
                if listeners.sockets.len() == 1 { "s" } else { "" },
                if listeners.sockets.len() == 1 { "it" } else { "them" }
            );
            let fix = "run preflight as root (or as the target's user) to read its descriptors";
            return check.judged(Verdict::Warning, why, Some(fix.into()));
        }
        let capacity: u64 = listeners.processes.iter().map(|p| p.headroom().saturating_sub(TARGET_RESERVE)).sum();
        let soft = listeners.processes.iter().map(|p| p.limit_soft).min().unwrap_or(0);
        let open: u64 = listeners.processes.iter().map(|p| p.open).sum();
        check
            .figures
            .add("target_processes", Some(listeners.processes.len() as u64))
            .add("target_nofile_soft", Some(soft))
            .add("target_open", Some(open))
            .add("target_can_accept", Some(capacity))
            .add("peak_connections", Some(self.peak));
        check.gives_at = Some(capacity);
        let each: Vec<String> = listeners
            .processes
            .iter()
            .map(|p| {
                format!("{} (pid {}): {} open of {}", printable(&p.name), p.pid, count(p.open), limit(p.limit_soft))
            })
            .collect();
        let summary = format!(
            "{}; {} can accept about {} more connections ({TARGET_RESERVE} descriptors kept per process), the scenario holds up to {}",
            each.join(", "),
            if listeners.processes.len() == 1 { "it" } else { "together they" },
            count(capacity),
            count(self.peak)
        );
        if self.peak <= capacity {
            return check.judged(Verdict::Fits, summary, None);
        }
        let per_process = listeners.processes.len() as u64;
        let wanted = (self.peak.div_ceil(per_process) + TARGET_RESERVE + 100).div_ceil(1000) * 1000;
        let fix = format!(
            "raise the target's descriptor limit to at least {wanted} (LimitNOFILE={wanted} in its systemd unit, or \
             `ulimit -n {wanted}` in the shell that starts it), or run more target processes on the port \
             (SO_REUSEPORT). Past its limit a target that accepts and then closes what it cannot serve gives \
             clients EOF or RST before any CONNACK (`closed_before_connack`); one that stops accepting leaves \
             them waiting (`connack_timeout`)"
        );
        check.judged(Verdict::Blocks, summary, Some(fix))
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{connect, env, listeners, plan, LOCAL};
    use super::*;

    #[test]
    fn a_target_nobody_serves_warns() {
        let plan = plan(LOCAL, &connect(100, 100));
        let e = Environment { listeners: Some(probe::Listeners::default()), ..env(&plan) };
        let target = Ctx::new(&plan, &e).target_descriptors();
        assert_eq!(target.verdict, Verdict::Warning);
        assert!(target.summary.contains("nothing listens at 127.0.0.1:1883") && target.summary.contains("refused"));
        let mut hidden = listeners(1024);
        hidden.processes.clear();
        let e = Environment { listeners: Some(hidden), ..env(&plan) };
        assert!(Ctx::new(&plan, &e).target_descriptors().fix.as_deref().unwrap().contains("root"));
    }
}
