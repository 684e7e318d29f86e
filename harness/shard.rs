//! Shards: how the operations of a phase are split among processes and hosts.
//!
//! Operation `i` of a phase (connection number g = the connections of the phases
//! before it + i) is shard `index` of `count`'s when `i % count == index`. A shard runs
//! its operations at their single-process instants, so the shards together run exactly
//! the schedule of one process. A host's shard composes with its worker processes
//! ([`Shard::compose`]).

use serde::{Deserialize, Serialize};
/// Which share of every phase a process runs: operation `i` is its own when
/// `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run in one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// How many of the operations `0..total` are this shard's.
    pub fn share(self, total: u64) -> u64 {
        let (index, count) = (u64::from(self.index), u64::from(self.count));
        total.saturating_sub(index).div_ceil(count)
    }

    /// The global number of this shard's `k`-th operation.
    pub fn global(self, k: u64) -> u64 {
        u64::from(self.index) + k * u64::from(self.count)
    }

    /// This shard of a phase whose operations continue a count that stood at `first`
    /// before it: operation `i` is its own when `(first + i) % count == index`. Shards
    /// then take their turns across phases as if the phases were one, so that over all
    /// connect phases shard `s` opens the connections numbered `s.index` mod `s.count`
    /// (in the count of connections opened to hold), and closes by count, oldest first,
    /// take from each shard what it holds (see `Plan::first_operation`).
    pub fn offset_by(self, first: u64) -> Shard {
        let count = u64::from(self.count);
        let shift = (u64::from(self.index) + count - first % count) % count;
        Shard { index: shift as u32, count: self.count }
    }

    /// Worker `worker` of the `workers` processes running host shard `host`: the host's
    /// operations (`i % host.count == host.index`) dealt round-robin to its workers.
    pub fn compose(host: Shard, worker: u32, workers: u32) -> Shard {
        Shard { index: host.index + host.count * worker, count: host.count * workers }
    }

    /// `"i/N"` → a shard, checked.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not a shard; write INDEX/COUNT with INDEX < COUNT, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_their_workers_compose_into_the_single_schedule() {
        let total = 1000;
        let mut seen = vec![0u32; total as usize];
        for host in (0..3).map(|index| Shard { index, count: 3 }) {
            let mut mine = 0;
            for w in 0..4 {
                let shard = Shard::compose(host, w, 4);
                for k in 0..shard.share(total) {
                    let g = shard.global(k);
                    assert_eq!(g % 3, u64::from(host.index), "host {host}'s worker {w} ran {g}");
                    seen[g as usize] += 1;
                }
                mine += shard.share(total);
            }
            assert_eq!(mine, host.share(total));
        }
        assert!(seen.iter().all(|n| *n == 1), "every operation runs exactly once");
    }

    /// Phases of 4, 3 and 5 operations split over 3 shards: with each phase's shards
    /// offset by the operations before it, shard s runs exactly the operations numbered
    /// s mod 3 of the count across the phases, so the phases together deal operations as
    /// one phase would. Without the offset, shard 0 took 2 of each phase's 4 or 5.
    #[test]
    fn offset_shards_continue_the_count_across_phases() {
        let phases = [4u64, 3, 5];
        let mut first = 0;
        let mut ran = vec![Vec::new(); 3];
        for total in phases {
            for index in 0..3 {
                let shard = Shard { index, count: 3 }.offset_by(first);
                for k in 0..shard.share(total) {
                    let i = shard.global(k);
                    assert!(i < total);
                    ran[index as usize].push(first + i);
                }
            }
            first += total;
        }
        for (index, numbers) in ran.iter().enumerate() {
            assert!(numbers.iter().all(|n| n % 3 == index as u64), "shard {index} ran {numbers:?}");
        }
        assert_eq!(ran.iter().map(Vec::len).sum::<usize>(), 12);
        assert_eq!(Shard::ALL.offset_by(7), Shard::ALL);
    }

    #[test]
    fn shards_parse() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
