//! The **descriptors** check: the client worker processes needed under RLIMIT_NOFILE
//! (one process holds its soft limit minus [`descriptors::RESERVE`] connections), and the
//! embedded target's.

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::{count, plural};
use crate::descriptors;

impl Ctx<'_> {
    pub(super) fn descriptors(&self) -> Check {
        let mut check = Check::new(CheckName::Descriptors, Side::Client);
        let nofile = &self.env.nofile;
        let per_process = descriptors::per_process(nofile.soft_after);
        check
            .figures
            .add("nofile_soft", Some(nofile.soft_after))
            .add("nofile_hard", Some(nofile.hard))
            .add("nr_open", self.env.limits.nr_open)
            .add("peak_connections", Some(self.peak))
            .add("connections_per_process", Some(per_process))
            .add("workers_needed", Some(self.needed))
            .add("workers", Some(self.workers))
            .add("target_workers", Some(self.target_workers));
        let target = if self.embedded {
            format!(
                "; the embedded target needs {} process{} too (each accepted connection is a descriptor there)",
                self.target_workers,
                plural(self.target_workers, "es")
            )
        } else {
            String::new()
        };
        let summary = format!(
            "{} connections at once: {} worker process{} of at most {} connections each (RLIMIT_NOFILE {} soft, {} hard){target}",
            count(self.peak),
            self.workers,
            plural(self.workers, "es"),
            count(per_process),
            count(nofile.soft_after),
            count(nofile.hard),
        );
        if self.workers < self.needed {
            check.gives_at = Some(self.workers * per_process);
            let raise = match self.env.limits.nr_open {
                Some(nr_open) if nr_open > nofile.hard => format!(
                    ", or raise the hard limit (`ulimit -Hn {}` as root, LimitNOFILE= for a service; fs.nr_open allows up to {})",
                    self.peak.div_ceil(self.workers) + descriptors::RESERVE,
                    count(nr_open)
                ),
                _ => String::new(),
            };
            let fix = format!("use `--workers auto` or at least `--workers {}`{raise}", self.needed);
            let summary = format!(
                "{} worker process{} {} at most {} connections, the scenario holds up to {}: {summary}",
                self.workers,
                plural(self.workers, "es"),
                if self.workers == 1 { "holds" } else { "hold" },
                count(self.workers * per_process),
                count(self.peak)
            );
            return check.judged(Verdict::Blocks, summary, Some(fix));
        }
        check.judged(Verdict::Fits, summary, None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::memory::{EMBEDDED_BYTES_PER_CONNECTION, HARNESS_BYTES_PER_CONNECTION, KERNEL_BYTES_PER_SOCKET};
    use super::super::testing::{connect, env, plan, LOCAL};
    use super::*;

    #[test]
    fn more_connections_than_one_process_holds_take_workers() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let env = env(&plan);
        let ctx = Ctx::new(&plan, &env);
        assert_eq!(ctx.workers, 3);
        let check = ctx.descriptors();
        assert_eq!(check.verdict, Verdict::Fits);
        assert!(check.summary.contains("3 worker processes"));
        // an embedded target needs its own processes, and memory for both sides
        let embedded = self::plan("target = \"embedded\"", &connect(50_000, 10_000));
        let env = Environment { target: None, listeners: None, ..self::env(&embedded) };
        let ctx = Ctx::new(&embedded, &env);
        assert_eq!((ctx.workers, ctx.target_workers), (3, 3));
        assert_eq!(ctx.target_descriptors().verdict, Verdict::Fits);
        let memory = ctx.memory();
        let per_connection = 2 * KERNEL_BYTES_PER_SOCKET + HARNESS_BYTES_PER_CONNECTION + EMBEDDED_BYTES_PER_CONNECTION;
        assert_eq!(memory.figures.get("per_connection_bytes"), Some(per_connection));
    }

    #[test]
    fn forced_too_few_workers_block() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let env = Environment { workers: Some(2), ..env(&plan) };
        let check = Ctx::new(&plan, &env).descriptors();
        assert_eq!(check.verdict, Verdict::Blocks);
        assert_eq!(check.gives_at, Some(2 * 19_900));
        assert!(check.fix.as_deref().unwrap().contains("--workers 3"), "{check:?}");
    }
}
