//! Open-loop pacing: operation `i` of a phase is scheduled at `start + i / rate`,
//! whatever happened to the operations before it. Latency is measured from that
//! instant, so a slow target cannot hide its delay (no coordinated omission).
//!
//! A phase's operations are split among shards (worker processes, hosts) by
//! interleaving: shard `index` of `count` runs operations `index`, `index + count`, ...
//! at their single-process instants, so the shards together run exactly the schedule
//! of one process.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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

/// Issues this shard's `total` operations of a phase paced at `rate` per second from `start`.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    rate: f64,
    shard: Shard,
    total: u64,
    issued: u64,
}

impl Pacer {
    /// `total` is this shard's own operation count (see [`Shard::share`]).
    pub fn new(start: Instant, rate: f64, total: u64, shard: Shard) -> Pacer {
        Pacer { start, rate, shard, total, issued: 0 }
    }

    /// The scheduled instant of this shard's operation `k`.
    pub fn scheduled(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(self.shard.global(k) as f64 / self.rate)
    }

    /// When the next operation is due, or `None` when all are issued.
    pub fn next_due(&self) -> Option<Instant> {
        (self.issued < self.total).then(|| self.scheduled(self.issued))
    }

    /// The operations due at `now` that were not issued yet, as (global operation
    /// number within the phase, scheduled instant).
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = (u64, Instant)> + '_ {
        std::iter::from_fn(move || {
            let due = self.next_due().filter(|at| *at <= now)?;
            self.issued += 1;
            Some((self.shard.global(self.issued - 1), due))
        })
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn finished(&self) -> bool {
        self.issued >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_open_loop() {
        let start = Instant::now();
        let mut p = Pacer::new(start, 1000.0, 10, Shard::ALL);
        assert_eq!(p.scheduled(5), start + Duration::from_millis(5));
        // Late by 3.5 ms: four operations are due at once, each keeping its own instant.
        let due: Vec<_> = p.take_due(start + Duration::from_micros(3_500)).collect();
        assert_eq!(due.len(), 4);
        assert_eq!(due[3], (3, start + Duration::from_millis(3)));
        assert_eq!(p.next_due(), Some(start + Duration::from_millis(4)));
        let rest = p.take_due(start + Duration::from_secs(1)).count();
        assert_eq!(rest, 6);
        assert!(p.finished() && p.next_due().is_none());
    }

    #[test]
    fn shards_together_run_the_single_schedule() {
        let start = Instant::now();
        let whole: Vec<_> = Pacer::new(start, 100.0, 10, Shard::ALL).take_due(start + Duration::from_secs(1)).collect();
        let mut joined: Vec<_> = (0..3)
            .flat_map(|index| {
                let shard = Shard { index, count: 3 };
                let mut p = Pacer::new(start, 100.0, shard.share(10), shard);
                p.take_due(start + Duration::from_secs(1)).collect::<Vec<_>>()
            })
            .collect();
        joined.sort_by_key(|(i, _)| *i);
        assert_eq!(joined, whole);
        assert_eq!([0, 1, 2].map(|index| Shard { index, count: 3 }.share(10)), [4, 3, 3]);
        assert_eq!(Shard { index: 4, count: 5 }.share(3), 0);
    }

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

    #[test]
    fn shards_parse() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
