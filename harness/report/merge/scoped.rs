//! Census readings of a sharded run's shards by census scope (one machine's network
//! namespace, `ShardInfo::census_scope`): shards of one scope counted each other's
//! sockets, so their readings are one reading (the largest of each figure), and readings
//! of different scopes are added. Census, kernel counters and sockstat merge so.
//!
//! What was not observed merges the same way: within a scope a figure is unobserved
//! only when no shard of the scope observed it; across scopes, when any scope did not.

use std::collections::BTreeMap;

use probe::{SockStat, StateCounts};

use crate::report::unobserved::{self, Unobserved};
use crate::report::{CensusPair, PhaseReport};

/// What a census scope (one machine's namespace) measured, however many shards read it.
#[derive(Debug, Clone, Default)]
pub(super) struct Scoped {
    pub client: StateCounts,
    pub server: Option<StateCounts>,
    pub kernel: BTreeMap<String, i64>,
    pub sockstat: SockStat,
    /// The figures above not observed (census, kernel, sockstat), each reason prefixed
    /// with the shard whose it was.
    pub unobserved: Unobserved,
}

impl Scoped {
    pub(super) fn census(pair: &CensusPair) -> Scoped {
        Scoped { client: pair.client, server: pair.server, ..Scoped::default() }
    }

    /// What a shard's coordinator observed of its machine in a phase; what it did not,
    /// with `whose` (`shard 1 (host): `) before each reason.
    pub(super) fn phase(p: &PhaseReport, whose: &str) -> Scoped {
        let mut unobserved = Unobserved::default();
        for (figure, reason) in p.unobserved.iter().filter(|(f, _)| is_scoped(f)) {
            unobserved.mark(figure, format!("{whose}{reason}"));
        }
        let (kernel, sockstat) = (p.kernel.clone(), p.sockstat);
        Scoped { client: p.census.client, server: p.census.server, kernel, sockstat, unobserved }
    }

    /// Two readings of the same sockets: the larger of each.
    fn widen(&mut self, other: &Scoped) {
        self.client.max_each(&other.client);
        if let Some(server) = &other.server {
            self.server.get_or_insert_with(Default::default).max_each(server);
        }
        for (key, value) in &other.kernel {
            let mine = self.kernel.entry(key.clone()).or_default();
            *mine = (*mine).max(*value);
        }
        self.sockstat = each_sockstat(self.sockstat, other.sockstat, u64::max);
        // A zero that is no reading is below any reading, so the larger of each is the
        // reading of whichever shard observed it; unobserved only if neither did.
        self.unobserved.retain(|figure| other.unobserved.get(figure).is_some());
    }

    /// Readings of different sockets: the sum.
    fn add(&mut self, other: &Scoped) {
        self.client.merge(&other.client);
        if let Some(server) = &other.server {
            self.server.get_or_insert_with(Default::default).merge(server);
        }
        for (key, value) in &other.kernel {
            let sum = self.kernel.entry(key.clone()).or_default();
            *sum = sum.saturating_add(*value);
        }
        self.sockstat = each_sockstat(self.sockstat, other.sockstat, |a, b| a.saturating_add(b));
        self.unobserved.extend(&other.unobserved, "");
    }

    pub(super) fn into_census(self) -> CensusPair {
        CensusPair { client: self.client, server: self.server }
    }
}

/// Readings grouped by scope: the largest within a scope, summed across scopes.
pub(super) fn by_scope<'a>(readings: impl Iterator<Item = (&'a str, Scoped)>) -> Scoped {
    let mut scopes: BTreeMap<&str, Scoped> = BTreeMap::new();
    for (scope, reading) in readings {
        match scopes.get_mut(scope) {
            Some(seen) => seen.widen(&reading),
            None => {
                scopes.insert(scope, reading);
            }
        }
    }
    let mut total = Scoped::default();
    scopes.values().for_each(|s| total.add(s));
    total
}

/// `reason` for the figures a shard's report would have given a phase: its workers'
/// counts, and with `census` its machine's census, counters and sockstat.
pub(super) fn absent(unobserved: &mut Unobserved, reason: &str, census: bool) {
    unobserved.mark(unobserved::OPERATIONS, reason);
    if census {
        for figure in [unobserved::CENSUS_CLIENT, unobserved::CENSUS_SERVER, unobserved::KERNEL, unobserved::SOCKSTAT] {
            unobserved.mark(figure, reason);
        }
    }
}

/// Figures a census scope observes (a shard's own machine), not its workers.
pub(super) fn is_scoped(figure: &str) -> bool {
    [unobserved::CENSUS_CLIENT, unobserved::CENSUS_SERVER, unobserved::SOCKSTAT].contains(&figure)
        || figure == unobserved::KERNEL
        || figure.starts_with("kernel.")
}

fn each_sockstat(a: SockStat, b: SockStat, f: impl Fn(u64, u64) -> u64) -> SockStat {
    SockStat {
        sockets_used: f(a.sockets_used, b.sockets_used),
        tcp_inuse: f(a.tcp_inuse, b.tcp_inuse),
        tcp_orphan: f(a.tcp_orphan, b.tcp_orphan),
        tcp_tw: f(a.tcp_tw, b.tcp_tw),
        tcp_alloc: f(a.tcp_alloc, b.tcp_alloc),
        tcp_mem_pages: f(a.tcp_mem_pages, b.tcp_mem_pages),
    }
}
