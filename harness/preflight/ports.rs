//! The **ports** check: source addresses × ephemeral ports per destination
//! ([`crate::sources`]).

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::environment::EMBEDDED_PLACEHOLDER;
use super::numbers::{count, plural};
use crate::sources;

impl Ctx<'_> {
    pub(super) fn ports(&self) -> Check {
        let mut check = Check::new(CheckName::Ports, Side::Client);
        let held = self.plan.peak_held();
        let sources = &self.env.sources;
        let addrs = sources.addrs.len() as u64;
        let per_pair = held.div_ceil(addrs.max(1));
        let half = sources.range_size() / 2;
        check
            .figures
            .add("peak_held", Some(held))
            .add("source_addresses", Some(addrs))
            .add("ports_per_source", Some(sources.range_size()))
            .add("capacity", Some(sources.capacity()))
            .add("connections_per_pair", Some(per_pair));
        check.gives_at = Some(sources.capacity());
        let toward = self.env.target.unwrap_or(EMBEDDED_PLACEHOLDER);
        let from = if addrs == 0 {
            "one source address (the kernel's choice)".to_string()
        } else {
            format!("{addrs} source address{}", plural(addrs, "es"))
        };
        let summary = format!(
            "{} connections held at once to {}: {from} × {} ports (ip_local_port_range {}-{}) give {}; {} per (source, destination) pair",
            count(held),
            self.target_text(),
            count(sources.range_size()),
            sources.ports.0,
            sources.ports.1,
            count(sources.capacity()),
            count(per_pair)
        );
        if let Err(e) = sources::check_budget(held, sources, toward) {
            return check.judged(Verdict::Blocks, summary, Some(e.fix));
        }
        if addrs == 0 && held > half {
            let why = format!(
                "{summary}. Past half the range ({}) on one pair the kernel's port search at connect() slows \
                 sharply: it searches the range for a free port on every connect (on the machine sockcap is \
                 developed on, tens of times slower)",
                count(half)
            );
            let fix =
                "give `sources` (addresses of this host's interfaces): sockcap then binds ports it chooses itself, \
                       which stays flat to the whole range";
            return check.judged(Verdict::Warning, why, Some(fix.into()));
        }
        check.judged(Verdict::Fits, summary, None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{connect, env, plan, LOCAL, REMOTE};
    use super::*;
    use crate::sources::Sources;

    #[test]
    fn too_many_connections_for_the_ports_block() {
        let plan = plan(&format!("{LOCAL}\nsources = [\"127.0.0.2\"]"), &connect(40_000, 10_000));
        let env = env(&plan);
        let ports = Ctx::new(&plan, &env).ports();
        assert_eq!(ports.verdict, Verdict::Blocks);
        assert_eq!(ports.gives_at, Some(28_232));
        assert!(ports.fix.as_deref().unwrap().contains("at least 2 source addresses"), "{ports:?}");
        // without `sources`, a loopback target is spread over enough 127.0.0.x addresses
        let auto = self::plan(LOCAL, &connect(40_000, 10_000));
        let env = self::env(&auto);
        let ports = Ctx::new(&auto, &env).ports();
        assert_eq!(ports.verdict, Verdict::Fits);
        assert_eq!(ports.figures.get("source_addresses"), Some(3));
    }

    #[test]
    fn one_pair_past_half_the_range_warns() {
        let plan = plan(&format!("target = \"{REMOTE}\""), &connect(20_000, 1_000));
        let e =
            Environment { target: Some(REMOTE.parse().unwrap()), target_local: false, listeners: None, ..env(&plan) };
        let e = Environment { sources: Sources::new(Vec::new(), sources::DEFAULT_RANGE), ..e };
        let ctx = Ctx::new(&plan, &e);
        let ports = ctx.ports();
        assert_eq!(ports.verdict, Verdict::Warning);
        assert!(ports.summary.contains("slows sharply") && !ports.summary.contains("here"), "{ports:?}");
        // a remote target: one socket per connection here, and nothing to read of its side
        assert_eq!(ctx.file_max().figures.get("files_per_connection"), Some(1));
        assert_eq!(ctx.target_descriptors().verdict, Verdict::Skipped);
        assert_eq!(ctx.accept_queue().verdict, Verdict::Skipped);
    }
}
