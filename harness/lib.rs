//! sockcap: connection-capacity load tests for TCP and MQTT servers, with the
//! socket states verified by the kernel's sock_diag at every phase.
//!
//! Data flows one way: CLI / scenario file → [`plan::Plan`] →
//! [`engine::run`] → [`report::RunReport`] → the views in [`report`].

pub mod child_process;
pub mod cli;
pub mod descriptors;
pub mod embedded;
pub mod engine;
pub mod expect;
pub mod failure;
pub mod latency;
pub mod metrics;
pub mod netns;
pub mod plan;
pub mod preflight;
pub mod printable;
pub mod protocol;
pub mod rendezvous;
pub mod report;
pub mod scenario;
pub mod search;
pub mod shard;
pub mod socket;
pub mod sources;
pub mod stderr;
pub mod transport;
