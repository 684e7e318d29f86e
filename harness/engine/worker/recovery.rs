//! What one worker saw of lost connections in a phase: [`Recoveries`], folded from the
//! connection tasks' loss and reconnect events, reported as the phase's
//! [`Recovery`] (merged exactly across workers and shards, see `report/merge/`).

use tokio::time::Instant;

use crate::failure::{ErrorCounts, ErrorKind};
use crate::latency::Latency;
use crate::report::recovery::{Recovery, BUCKET_MS};

/// A phase's losses and returns so far, on one worker.
#[derive(Debug)]
pub struct Recoveries {
    lost: u64,
    /// Losses by the kind that ended the connection (`ping_timeout`, `closed_by_peer`, ...).
    lost_by: ErrorCounts,
    recovered: u64,
    /// Each return's time from its loss, µs.
    recovery: Latency,
    /// Returns in each 100 ms since `start`.
    timeline: Vec<u32>,
    last_back: Option<Instant>,
    /// Failed reconnect attempts by kind.
    refusals: ErrorCounts,
    start: Instant,
}

impl Recoveries {
    pub fn new(start: Instant) -> Recoveries {
        Recoveries {
            lost: 0,
            lost_by: ErrorCounts::default(),
            recovered: 0,
            recovery: Latency::new(),
            timeline: Vec::new(),
            last_back: None,
            refusals: ErrorCounts::default(),
            start,
        }
    }

    pub fn lost(&mut self, kind: ErrorKind) {
        self.lost += 1;
        self.lost_by.record(kind, None);
    }

    /// A lost connection is back, `recovery_us` after its loss.
    pub fn back(&mut self, recovery_us: u64) {
        let now = Instant::now();
        self.recovered += 1;
        self.recovery.record_us(recovery_us);
        self.last_back = Some(now);
        let bucket = (now.saturating_duration_since(self.start).as_millis() as u64 / BUCKET_MS) as usize;
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] = self.timeline[bucket].saturating_add(1);
    }

    pub fn refused(&mut self, kind: ErrorKind, errno: Option<i32>) {
        self.refusals.record(kind, errno);
    }

    /// The phase's figures, `last_back_ms` counted from the phase's start (the worker's
    /// report starts at 0; the coordinator adds the phase's start in the run); `None`
    /// when the phase had no loss, return or refusal.
    pub fn report(&self) -> Option<Recovery> {
        let refusals = self.refusals.to_map().into_iter().filter(|(_, n)| *n > 0).collect();
        let lost_by = self.lost_by.to_map().into_iter().filter(|(_, n)| *n > 0).collect();
        let recovery = Recovery {
            lost: self.lost,
            lost_by,
            recovered: self.recovered,
            recovery_us: self.recovery.summary(),
            peak_reconnect_rate_per_s: Recovery::peak_per_s(&self.timeline),
            last_back_ms: self.last_back.map(|t| t.saturating_duration_since(self.start).as_millis() as u64),
            refusals,
            reconnects_100ms: self.timeline.clone(),
            // The worker's count across phases, set by the worker.
            down_at_end: 0,
        };
        (!recovery.is_empty()).then_some(recovery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_returns_and_refusals_are_reported() {
        let mut r = Recoveries::new(Instant::now());
        assert_eq!(r.report(), None, "no loss: no recovery figures");
        r.lost(ErrorKind::PingTimeout);
        r.lost(ErrorKind::ClosedByPeer);
        r.refused(ErrorKind::Refused, None);
        r.refused(ErrorKind::Refused, None);
        r.refused(ErrorKind::ConnackRefused, None);
        r.back(1_500);
        r.back(250_000);
        let report = r.report().unwrap();
        assert_eq!((report.lost, report.recovered, report.peak_reconnect_rate_per_s), (2, 2, 2));
        assert_eq!(report.recovery_us.count, 2);
        assert!((250_000..250_250).contains(&report.recovery_us.max), "3 digits: {}", report.recovery_us.max);
        assert_eq!(
            report.refusals.into_iter().collect::<Vec<_>>(),
            [("connack_refused".into(), 1), ("refused".into(), 2)]
        );
        assert_eq!(
            report.lost_by.into_iter().collect::<Vec<_>>(),
            [("closed_by_peer".into(), 1), ("ping_timeout".into(), 1)]
        );
        assert!(report.last_back_ms.is_some_and(|ms| ms < 1_000));
        assert_eq!(report.reconnects_100ms.iter().sum::<u32>(), 2);
    }
}
