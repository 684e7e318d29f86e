//! The engine: runs a [`Plan`](crate::plan::Plan)'s phases against a target and
//! returns a [`RunReport`](crate::report::RunReport).
//!
//! The engine is a coordinator and its workers:
//! - [`coordinator`]: [`run`] keeps the workers' phases in step, takes the censuses
//!   ([`census`]) and kernel counters ([`counters`]), runs each phase's [`events`] (faults on
//!   purpose), merges the workers' reports and judges the expectations; [`spend`] measures
//!   what the target and sockcap spent in each phase;
//! - [`worker_set`]: the coordinator's workers, one in this process or `sockcap worker`
//!   child processes;
//! - [`messages`]: what the two say to each other, the same in-process and between
//!   processes;
//! - [`worker`]: runs its [`Shard`](crate::shard::Shard) of every phase: the phase's
//!   action on an open-loop schedule, one task per client [`connection`], and the
//!   measurements folded from their events.
//!
//! The engine never prints: live progress goes out on a `watch` channel that the CLI
//! renders.

pub mod census;
pub mod connection;
pub mod coordinator;
pub mod counters;
pub mod events;
pub mod messages;
pub mod progress;
pub mod spend;
pub mod worker;
pub mod worker_set;

pub use coordinator::{run, RunContext, StartGate};
pub use events::{set_netem, RestartRequest, TargetRestarts};
pub use progress::{EndedPhase, Progress};
