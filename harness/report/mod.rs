//! The run report: plain data that every output format is a view of.
//!
//! [`RunReport`] ([`run_report`](mod@run_report)) is what [`crate::engine::run`] returns
//! and what `--json` writes (schema `sockcap.report/1`). Field names carry their units
//! (`_us`, `_ms`, `_per_s`). Views: [`text`] (the human table on stdout) and [`json`]
//! (the file). [`junit`] writes the expectations as JUnit XML; [`html`] the page;
//! [`compare`] judges one report against another (`sockcap compare`); [`write`](mod@write)
//! is the file output they share (atomic for a file, in place for a FIFO or a device);
//! [`format`](mod@format) and [`markup`] are the number formats and the escaping of the
//! human views.
//! The JSON's shape is `docs/report.schema.json`, kept in step by a test.

pub mod compare;
pub mod findings;
pub mod format;
pub mod frame;
pub mod html;
pub mod json;
pub mod judge;
pub mod junit;
pub mod markup;
pub mod merge;
pub mod messages;
pub mod recovery;
pub mod run_report;
mod shard_info;
pub mod spend;
pub mod text;
pub mod unobserved;
pub mod write;

#[cfg(test)]
pub(crate) mod test_support;

pub use findings::findings;
pub use format::thousands;
pub use recovery::Recovery;
pub use run_report::{
    CensusPair, CensusSample, EventReport, Exhaustion, ExpectationResult, Latencies, LimitsReport, MergeInfo,
    MergedShard, Outcome, PhaseReport, RunReport, ScenarioInfo, ShardInfo, TargetFds, SCHEMA,
};
pub use spend::{GeneratorSpend, KernelMemory, SideMemory, TargetSpend};
pub use unobserved::Unobserved;
