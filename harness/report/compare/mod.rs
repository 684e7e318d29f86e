//! `sockcap compare`: two reports side by side, phase by phase, figure by figure, and
//! which differences pass a regression limit. Pure: [`compare`] takes two
//! [`RunReport`](crate::report::RunReport)s and returns a [`Comparison`]; printing is
//! the CLI's job. The comparison is in `comparison.rs`, a figure and its
//! verdict in `figure.rs`, the limits in `limits.rs`.
//!
//! - Phases are matched by name (the n-th phase called `ramp` in one report with the
//!   n-th in the other). A phase of the baseline missing from the current report is a
//!   regression (the run stopped early, or the scenario changed).
//! - Latency figures come from the serialized histograms (`hdr`), decoded and read
//!   again, not from the rounded percentiles beside them.
//! - Metric names are the expectation names
//!   ([`Metric::parse`](crate::expect::Metric::parse)): `connect_p99`, `handshake_p50`,
//!   `close_max`, `established`, `server.time_wait`, `errors`, `errors.<kind>`,
//!   `kernel.<Counter>`, `connected`, `drops`, `rate`.
//! - Which way is worse ([`Better`]): latencies, errors and drops get worse as they grow;
//!   `established` (either side), `connected` and `rate` as they shrink. Every other
//!   socket state and kernel counter is a regression when it moves either way by more
//!   than its limit: a census that shifts (more TIME_WAIT: port pressure; fewer: closes
//!   that did not finish) means the run behaved differently.
//! - A limit ([`Allowance`]) is a percentage of the baseline value, an absolute amount in
//!   the metric's unit, or both added: `connect_p99=20%+1ms` lets p99 grow by a fifth
//!   plus a millisecond (a floor for sub-millisecond noise). `errors=0`: no increase.
//! - Without `--max-regression` the [`RegressionLimits::defaults`] apply; with it, only
//!   the metrics it names are limited. Figures without a limit are still compared and
//!   shown, with no verdict.

mod comparison;
mod figure;
mod limits;

pub use comparison::{compare, CompareError, Comparison, PhaseComparison, Presence, Which};
pub use figure::{metric_name, Better, Figure, Verdict};
pub use limits::{Allowance, Limit, LimitError, RegressionLimits};
