//! Open-loop pacing: operation `i` of a phase is scheduled at `start + i / rate`,
//! whatever happened to the operations before it. Latency is measured from that
//! instant, so a slow target cannot hide its delay (no coordinated omission).
//!
//! A [`Shard`] of a phase runs operations `index`, `index + count`, ... at their
//! single-process instants.

use std::time::Duration;

use tokio::time::Instant;

use crate::shard::Shard;

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
}
