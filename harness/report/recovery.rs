//! A phase's recovery figures ([`Recovery`]): connections lost, back again, how long
//! each took (an HdrHistogram, merged exactly like the latencies), the peak reconnect
//! rate, when the last came back, and the failed reconnect attempts by kind.
//!
//! A recovery is recorded in the phase where the connection came back: one lost near a
//! phase's end and back in the next counts under `lost` in the first and under
//! `recovered` (with its whole recovery time) in the second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;

/// The width of one [`Recovery::reconnects_100ms`] bucket, in ms.
pub const BUCKET_MS: u64 = 100;

/// The buckets in the window the peak rate is counted over: one second.
const WINDOW: usize = (1_000 / BUCKET_MS) as usize;

/// What a phase saw of lost connections and their way back (`[client] reconnect`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Established connections lost in the phase without sockcap closing them.
    pub lost: u64,
    /// Lost connections (in this phase or before) that came back in this phase.
    pub recovered: u64,
    /// Each recovered connection's time from its loss to its CONNACK again (TCP: to its
    /// connect again).
    pub recovery_us: LatencySummary,
    /// The most reconnects in any one second of the phase (a sliding window over
    /// [`Recovery::reconnects_100ms`], all workers and shards summed first).
    pub peak_reconnect_rate_per_s: u64,
    /// When the last connection came back, ms since the start of the run (like a
    /// phase's `started_ms`); null when none did.
    #[serde(default)]
    pub last_back_ms: Option<u64>,
    /// Reconnect attempts that failed, by error kind (`refused`, `reset`, `timed_out`,
    /// `connack_refused`, ...); kinds with none left out.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
    /// Reconnects in each 100 ms since the phase started; trailing empty buckets left out.
    #[serde(default)]
    pub reconnects_100ms: Vec<u32>,
}

impl Recovery {
    /// The peak rate of a reconnect timeline: the most reconnects in any `WINDOW`
    /// consecutive buckets (one second).
    pub fn peak_per_s(timeline: &[u32]) -> u64 {
        let sums = timeline.windows(WINDOW.min(timeline.len()).max(1));
        sums.map(|w| w.iter().map(|&n| u64::from(n)).sum::<u64>()).max().unwrap_or(0)
    }

    /// Whether a phase has anything to say on recovery (a loss, a return, a refusal).
    pub fn is_empty(&self) -> bool {
        self.lost == 0 && self.recovered == 0 && self.refusals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_busiest_second() {
        assert_eq!(Recovery::peak_per_s(&[]), 0);
        assert_eq!(Recovery::peak_per_s(&[3]), 3, "a phase shorter than a second");
        // 20 buckets: 2 s. The busiest second is buckets 5..15.
        let mut timeline = vec![1u32; 20];
        timeline[5] = 50;
        timeline[14] = 40;
        assert_eq!(Recovery::peak_per_s(&timeline), 50 + 40 + 8);
        assert_eq!(Recovery::peak_per_s(&[u32::MAX; 12]), 10 * u64::from(u32::MAX), "no overflow");
    }
}
