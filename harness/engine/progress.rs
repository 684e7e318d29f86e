//! What the engine publishes while it runs, on a `watch` channel that the CLI renders
//! (the progress line, `--metrics`): the phase, the workers' running counts, the last
//! census, and the totals of each phase that ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::report::{CensusPair, Latencies, PhaseReport};

/// A live view of the run, for the progress line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub phase_index: usize,
    pub phase_count: usize,
    pub phase_name: String,
    pub kind: &'static str,
    /// Operations planned / started / succeeded / failed in this phase, all workers.
    pub planned: u64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Connections sockcap holds open.
    pub open: u64,
    pub phase_elapsed: Duration,
    /// Client-side ESTABLISHED at the last census.
    pub established: Option<u64>,
    /// Client-side TIME_WAIT at the last census.
    pub time_wait: Option<u64>,
    /// Worker processes (1: the run is in this process).
    pub workers: usize,
    /// `failed` by error kind, all workers; kinds with none left out.
    pub errors: BTreeMap<String, u64>,
    /// Established connections lost in this phase, and lost ones connected again.
    pub drops: u64,
    pub reconnected: u64,
    /// Both sides' census at the last sample (the server side when the target is on
    /// this machine); `None` until a census succeeded.
    pub census: Option<CensusPair>,
    /// The phases that ended, in order (for `--metrics`: their reports' figures replace
    /// the live ones, and their histograms make the latency histograms).
    pub finished: Vec<Arc<EndedPhase>>,
}

/// The totals of a phase that ended, from its merged report: what `--metrics` counts.
/// (Not the whole report: its samples and timelines would double what the coordinator
/// keeps per phase.)
#[derive(Debug, Clone)]
pub struct EndedPhase {
    /// The phase's kind (`connect`, `hold`, ...).
    pub kind: String,
    pub succeeded: u64,
    /// Failures by error kind.
    pub errors: BTreeMap<String, u64>,
    pub drops: u64,
    pub reconnected: u64,
    /// The phase's latency histograms (HdrHistograms serialized in their summaries).
    pub latency_us: Latencies,
}

impl EndedPhase {
    pub fn of(report: &PhaseReport) -> EndedPhase {
        EndedPhase {
            kind: report.kind.clone(),
            succeeded: report.succeeded,
            errors: report.errors.clone(),
            drops: report.drops,
            reconnected: report.reconnected,
            latency_us: report.latency_us.clone(),
        }
    }
}
