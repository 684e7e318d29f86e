//! What the coordinator and its workers say to each other.
//!
//! A worker runs one [`Shard`](crate::shard::Shard) of every phase; the coordinator
//! keeps the phases in step, takes the censuses and merges the workers' phase reports.
//! The same messages travel over in-process channels (one worker) and, as JSON lines
//! on a worker process's stdin and stdout, between processes — and could as well travel
//! between machines: a worker's phase result is a [`PhaseReport`], the report's own
//! serialized form.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::report::PhaseReport;

/// Coordinator → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub enum Order {
    /// Start phase `phase` at this wall-clock instant (µs since the Unix epoch), so
    /// that every worker's schedule starts together.
    Start { phase: usize, at_unix_us: u64 },
    /// End the current phase now, report it, and run no other phase.
    Stop,
    /// Close every connection and end (after the coordinator's last census).
    Finish,
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// Waiting for the order to start phase `phase`.
    Ready { phase: usize },
    /// Running counts of the current phase, sent a few times a second.
    Progress(WorkerProgress),
    /// The worker's share of a phase, measured (no census: the coordinator takes it).
    Phase { phase: usize, report: Box<PhaseReport> },
    /// The worker has closed its connections and ends.
    Done { notes: Vec<String> },
}

/// One worker's running counts in a phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProgress {
    pub phase: usize,
    pub planned: u64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Connections the worker holds open (across phases).
    pub open: u64,
    /// `failed` by error kind (`refused`, `timed_out`, ...); kinds with none left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    /// Established connections lost in the phase without sockcap closing them.
    #[serde(default)]
    pub drops: u64,
    /// Lost connections connected again in the phase.
    #[serde(default)]
    pub reconnected: u64,
}

impl WorkerProgress {
    /// Add another worker's counts.
    pub fn add(&mut self, other: &WorkerProgress) {
        self.planned += other.planned;
        self.attempted += other.attempted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.open += other.open;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.drops += other.drops;
        self.reconnected += other.reconnected;
    }
}

/// Microseconds since the Unix epoch, now.
pub fn unix_us_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The local [`Instant`] of a wall-clock instant (µs since the epoch); now, if it passed.
pub fn instant_of_unix_us(at_unix_us: u64) -> Instant {
    let now = unix_us_now();
    Instant::now() + Duration::from_micros(at_unix_us.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_json_line_each() {
        let order = serde_json::to_string(&Order::Start { phase: 2, at_unix_us: 7 }).unwrap();
        assert_eq!(order, r#"{"order":"start","phase":2,"at_unix_us":7}"#);
        let progress = WorkerMsg::Progress(WorkerProgress { phase: 1, succeeded: 3, ..Default::default() });
        let line = serde_json::to_string(&progress).unwrap();
        assert!(!line.contains('\n'));
        match serde_json::from_str::<WorkerMsg>(&line).unwrap() {
            WorkerMsg::Progress(p) => assert_eq!(p.succeeded, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_start_instant_in_the_future_maps_ahead_of_now() {
        let at = instant_of_unix_us(unix_us_now() + 50_000);
        let ahead = at.saturating_duration_since(Instant::now());
        assert!(ahead > Duration::from_millis(30) && ahead <= Duration::from_millis(50), "{ahead:?}");
    }
}
