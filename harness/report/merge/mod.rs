//! Merging reports measured apart into one, exactly:
//! - [`phase_reports`]: the phase reports of several workers (processes, or hosts) of
//!   one phase, counts summed and histograms added (a histogram that cannot be
//!   decoded leaves its latency out, with a note: the engine's workers and the shards
//!   get the same);
//! - [`shards`]: the reports of a sharded run's hosts (`sockcap merge`), phase by phase
//!   with [`phases`], the census by scope (`scoped`), the expectations judged again.
//!
//! What a part did not observe stays unobserved in the merge (`report/unobserved.rs`).

pub mod phase_reports;
mod scoped;
pub mod shards;

pub use phase_reports::{phases, MergedPhase};
