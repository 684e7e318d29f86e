//! The run report's data: [`RunReport`] and the records it is made of, plain
//! `Serialize` data that every output format is a view of. Field names carry their
//! units (`_us`, `_ms`, `_per_s`); the JSON's shape is `docs/report.schema.json`.

use std::collections::BTreeMap;

use probe::{Limits, SockStat, StateCounts};
use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::report::messages::Messages;
use crate::report::recovery::Recovery;
use crate::report::spend::{GeneratorSpend, KernelMemory, TargetSpend};
use crate::report::unobserved::Unobserved;

/// The schema name and version written in every JSON report.
pub const SCHEMA: &str = "sockcap.report/1";

/// One run of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The sockcap version that wrote this report.
    pub sockcap_version: String,
    /// True when every expectation of every phase held and the run completed.
    pub passed: bool,
    /// How the run ended.
    pub outcome: Outcome,
    pub scenario: ScenarioInfo,
    /// Start of the run, RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    /// Descriptor limits and TCP sysctls in force.
    pub limits: LimitsReport,
    /// Which census backend answered (`sock_diag` or `proc_net`), and why, if the fallback.
    pub probe_backend: String,
    pub probe_warning: Option<String>,
    /// Findings a reader should act on (e.g. "the target may be out of descriptors").
    pub notes: Vec<String>,
    pub phases: Vec<PhaseReport>,
    /// Which shard of a fleet this run was (`--shard`); null for a whole run.
    #[serde(default)]
    pub shard: Option<ShardInfo>,
    /// The shards this report was merged from (`sockcap merge`); null otherwise.
    #[serde(default)]
    pub merge: Option<MergeInfo>,
    /// Why the run is invalid: its generator (sockcap's schedule or CPU) was the
    /// bottleneck in a phase (`report/spend.rs`); null when valid. An invalid run is
    /// not passed, whatever its expectations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// `passed`, `failed`, `invalid` or `interrupted`: the verdict in one word.
    #[serde(default)]
    pub verdict: String,
}

/// One shard of a run spread over several hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
    /// SHA-256 of the scenario file's bytes (hex): every shard of a fleet ran the same.
    pub scenario_sha256: String,
    /// The machine's host name.
    pub host: String,
    /// How the shards agreed on a common start: `rendezvous`, `start_at` or `none`.
    pub start: String,
    /// When phase 1 started, µs since the Unix epoch by this host's clock. Merged
    /// series are aligned on each shard's own phase-1 start, not on this figure.
    pub start_unix_us: u64,
    /// Which sockets this shard's census saw: the machine's boot id, the network
    /// namespace and the target. Shards with the same scope (one machine, one
    /// namespace, one target) counted each other's sockets too, so a merge counts such
    /// a census once, not once per shard.
    pub census_scope: String,
}

/// What a merged report was merged from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeInfo {
    pub expected_shards: u32,
    /// The shards merged, by index.
    pub shards: Vec<MergedShard>,
    /// Indices with no report: the merged figures leave them out.
    pub missing: Vec<u32>,
    /// True when a shard is missing.
    pub partial: bool,
}

/// One shard's report in a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u32,
    pub host: String,
    /// The file it was read from.
    pub file: String,
    pub outcome: Outcome,
    /// How many phases the shard ran (fewer than the scenario's when it was cut short).
    pub phases: u32,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every phase ran.
    Completed,
    /// Stopped by Ctrl-C; phases after the current one did not run.
    Interrupted,
    /// A worker process died; the report holds what was measured until then, and
    /// phases after the current one did not run.
    Failed,
}

/// What ran, against what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    /// The address connected to (the embedded target's actual address when embedded).
    pub target: String,
    /// True when sockcap started its own target for this run.
    pub embedded_target: bool,
    pub protocol: String,
    /// The MQTT protocol level the clients spoke: 4 (3.1.1) or 5; `None` for tcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_version: Option<u8>,
    /// Client source addresses in use (empty: the kernel's choice).
    pub sources: Vec<String>,
    /// True when the run had a private network namespace of its own.
    #[serde(default)]
    pub netns: bool,
    /// Worker processes that ran the connections (1: the run was in one process).
    #[serde(default = "one")]
    pub workers: u32,
    /// What the protocol ran over: `tcp` or `tls` (reports from before it: tcp).
    #[serde(default = "tcp")]
    pub transport: String,
    /// `[tls] insecure = true`: the target's certificate was not verified.
    #[serde(default)]
    pub tls_insecure: bool,
}

fn tcp() -> String {
    "tcp".to_string()
}

fn one() -> u32 {
    1
}

/// Limits before and after sockcap raised RLIMIT_NOFILE, and the sysctls in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsReport {
    pub nofile_soft_before: u64,
    pub nofile_soft_after: u64,
    pub nofile_hard: u64,
    /// Descriptors the scenario needs at its peak (connections plus a reserve).
    pub descriptors_needed: u64,
    /// The limits and sysctls as read after raising.
    pub in_force: Limits,
}

/// One phase's measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: String,
    /// `connect`, `hold`, `close`, `sleep` or `churn`; a phase of events alone: `exec`, `fault` or `netem`.
    pub kind: String,
    /// Start, relative to the start of the run.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// Connections (or closes) the phase planned.
    pub planned: u64,
    /// Connections (or closes) started.
    pub attempted: u64,
    /// Connections established with their handshake done (or closes completed).
    pub succeeded: u64,
    /// `succeeded` per second of the phase's active time.
    pub achieved_rate_per_s: f64,
    /// Connections held by the client when the phase ended.
    pub open_at_end: u64,
    /// Established connections lost during the phase without sockcap closing them.
    pub drops: u64,
    /// Reconnect attempts of lost connections (`[client] reconnect`).
    #[serde(default)]
    pub reconnect_attempts: u64,
    /// Lost connections connected again (and, MQTT, accepted) under `[client] reconnect`.
    #[serde(default)]
    pub reconnected: u64,
    /// Losses and returns: how long the lost connections took to come back
    /// (`report/recovery.rs`); null in a phase with no loss, return or refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// Connections the target closed that the client keeps open (CLOSE_WAIT), with
    /// `[client] on_eof = "hold"`.
    #[serde(default)]
    pub peer_closed: u64,
    /// Connections whose source port, chosen by sockcap, was held by a socket that does
    /// not share it (another program's): the kernel chose their port at connect.
    #[serde(default)]
    pub ports_taken: u64,
    /// TLS connections whose session was resumed (an abbreviated handshake, `[tls]
    /// resumption`); 0 for TCP.
    #[serde(default)]
    pub tls_resumed: u64,
    /// State census when the phase ended.
    pub census: CensusPair,
    /// Census sampled during the phase.
    pub samples: Vec<CensusSample>,
    pub latency_us: Latencies,
    /// Failures by kind, every kind present.
    pub errors: BTreeMap<String, u64>,
    /// errno → count for `errors.other`.
    pub other_errnos: BTreeMap<String, u64>,
    /// Kernel counter deltas over the phase (non-zero only).
    pub kernel: BTreeMap<String, i64>,
    /// /proc/net/sockstat when the phase ended.
    pub sockstat: SockStat,
    /// When the ephemeral ports toward the target ran out (first EADDRNOTAVAIL);
    /// null when they never did.
    #[serde(default)]
    pub exhaustion: Option<Exhaustion>,
    /// Successes (connections established, closes done, churn cycles) in each 100 ms
    /// since the phase started, all workers summed; trailing empty buckets left out.
    #[serde(default)]
    pub timeline_100ms: Vec<u32>,
    /// The descriptors of the target's processes when the phase ended, when the
    /// target listens on this machine and its processes could be read; null otherwise.
    #[serde(default)]
    pub target_fds: Option<TargetFds>,
    /// What the target's processes spent (RSS, CPU) over the phase, when it is local;
    /// null otherwise (and `target` in `unobserved`).
    #[serde(default)]
    pub target: Option<TargetSpend>,
    /// The connections' kernel memory, each side, when the phase ended.
    #[serde(default)]
    pub kernel_memory: KernelMemory,
    /// sockcap's own spend over the phase (CPU, ports); null when not measured.
    #[serde(default)]
    pub generator: Option<GeneratorSpend>,
    /// Why this phase's figures are the generator's, not the target's; null when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// Figures this phase did not observe, by name, and why (`report/unobserved.rs`):
    /// their fields above hold zeros that are no reading, and an expectation on one fails.
    #[serde(default)]
    pub unobserved: Unobserved,
    /// The events the phase ran at its start (`exec`, `fault`, `netem`), by the
    /// coordinator of each host; a failed one fails the run.
    #[serde(default)]
    pub events: Vec<EventReport>,
    /// Traffic over held MQTT connections (`subscribe`, `publish` phases, and deliveries
    /// in any phase); absent without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Messages>,
    pub expectations: Vec<ExpectationResult>,
}

/// An event a phase ran at its start, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReport {
    /// `exec`, `fault` or `netem`.
    pub kind: String,
    /// What ran: the command line, `restart_target 2s`, the `tc` command.
    pub what: String,
    /// Start, relative to the start of the run.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// True when it did what it was asked within its deadline.
    pub ok: bool,
    /// A command's exit code; null when no command exited by itself (a signal, a timeout).
    pub exit_status: Option<i32>,
    /// The last lines of the command's stdout and stderr together (at most 20 lines, 4 KiB).
    #[serde(default)]
    pub output_tail: String,
    /// Why it failed; null when `ok`.
    pub error: Option<String>,
}

/// The target's processes (found from its listening sockets) and their descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFds {
    /// Processes holding the target's listening sockets.
    pub processes: u32,
    /// Descriptors they hold, summed.
    pub open: u64,
    /// Their RLIMIT_NOFILE soft limits, summed: the most they may hold.
    pub limit: u64,
}

/// The ports toward the target ran out during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exhaustion {
    /// Connections established in the phase before the first EADDRNOTAVAIL.
    pub after_connections: u64,
    /// Time from the phase's start to the first EADDRNOTAVAIL.
    pub after_ms: u64,
    /// Client-side TIME_WAIT sockets counted right then.
    pub time_wait: u64,
    /// Time from the first EADDRNOTAVAIL to the next connection that succeeded
    /// (ports came back); null when none did during the phase.
    pub recovered_after_ms: Option<u64>,
    /// Connects that failed with EADDRNOTAVAIL in the phase.
    pub failed: u64,
    /// ip_local_port_range and tcp_tw_reuse when the ports ran out.
    pub ip_local_port_range: Option<(u16, u16)>,
    pub tcp_tw_reuse: Option<u8>,
}

/// Client-side census (remote port = the target's port) and, when the target runs on
/// this machine, the server side (local port = the target's port).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CensusPair {
    pub client: StateCounts,
    pub server: Option<StateCounts>,
}

/// A census taken during a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CensusSample {
    /// Time since the start of the run.
    pub t_ms: u64,
    pub client: StateCounts,
    pub server: Option<StateCounts>,
    /// Successes in the phase so far (connections established, or closes done).
    #[serde(default)]
    pub succeeded: u64,
    /// Failures in the phase so far (every error kind).
    #[serde(default)]
    pub failed: u64,
    /// Connections sockcap held open at the sample.
    #[serde(default)]
    pub open: u64,
}

impl CensusSample {
    /// Both sides' counts of this sample.
    pub fn pair(&self) -> CensusPair {
        CensusPair { client: self.client, server: self.server }
    }
}

/// Latency histograms, measured from each operation's scheduled instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// Scheduled connect instant → TCP connection established.
    pub connect: LatencySummary,
    /// Scheduled connect instant → TLS handshake done (transport `tls` only; absent in
    /// reports from before it).
    #[serde(default)]
    pub tls: LatencySummary,
    /// Scheduled connect instant → WebSocket upgrade answered (transport ws, wss; absent
    /// in reports from before it).
    #[serde(default)]
    pub ws: LatencySummary,
    /// Scheduled connect instant → CONNACK received (MQTT only).
    pub handshake: LatencySummary,
    /// Scheduled close instant → close finished (the target's FIN seen, where the mode waits for it).
    pub close: LatencySummary,
    /// Scheduled instant → the operation issued by its worker: how late sockcap's own
    /// schedule ran (connect, churn and close operations).
    #[serde(default)]
    pub lateness: LatencySummary,
}

/// One expectation and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectationResult {
    /// As written, e.g. `established >= 5000`.
    pub expr: String,
    /// The measured value, in `unit`; null when the phase did not measure it.
    pub actual: Option<f64>,
    /// Why `actual` is null: the figure was not observed (a census that failed, ...) or
    /// the phase has no such reading. Written only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `count`, `us` or `per_s`.
    pub unit: String,
    pub passed: bool,
    /// True for expectations sockcap adds itself (`errors == 0` where a phase names no error expectation).
    pub implicit: bool,
    /// True in a shard's report: the scenario's expectations hold or fail on the merged
    /// report (`sockcap merge`); `actual` and `passed` here are this shard's share only.
    #[serde(default)]
    pub deferred: bool,
}

impl PhaseReport {
    /// A phase that measured nothing (no worker reported it).
    pub fn empty(name: &str, kind: &str) -> PhaseReport {
        PhaseReport {
            name: name.to_string(),
            kind: kind.to_string(),
            started_ms: 0,
            duration_ms: 0,
            planned: 0,
            attempted: 0,
            succeeded: 0,
            achieved_rate_per_s: 0.0,
            open_at_end: 0,
            drops: 0,
            reconnect_attempts: 0,
            reconnected: 0,
            recovery: None,
            peer_closed: 0,
            ports_taken: 0,
            tls_resumed: 0,
            census: CensusPair::default(),
            samples: Vec::new(),
            latency_us: Latencies::default(),
            errors: BTreeMap::new(),
            other_errnos: BTreeMap::new(),
            kernel: BTreeMap::new(),
            sockstat: SockStat::default(),
            exhaustion: None,
            timeline_100ms: Vec::new(),
            target_fds: None,
            target: None,
            kernel_memory: KernelMemory::default(),
            generator: None,
            invalid: None,
            unobserved: Unobserved::default(),
            events: Vec::new(),
            messages: None,
            expectations: Vec::new(),
        }
    }
}

impl Latencies {
    /// The latencies with a sample or more, by name (`connect`, `tls`, `ws`, `handshake`,
    /// `close`), in that order.
    pub fn measured(&self) -> impl Iterator<Item = (&'static str, &LatencySummary)> {
        [
            ("connect", &self.connect),
            ("tls", &self.tls),
            ("ws", &self.ws),
            ("handshake", &self.handshake),
            ("close", &self.close),
        ]
        .into_iter()
        .filter(|(_, l)| l.count > 0)
    }
}

impl RunReport {
    /// The verdict in one word, as the text and HTML reports show it.
    pub fn verdict_word(&self) -> &'static str {
        let partial = self.merge.as_ref().is_some_and(|m| m.partial);
        match (self.outcome, self.passed) {
            (Outcome::Interrupted, _) => "INTERRUPTED",
            (Outcome::Completed, _) if self.invalid.is_some() => "INVALID",
            (Outcome::Failed, _) => "FAILED",
            (Outcome::Completed, _) if partial => "PARTIAL",
            (Outcome::Completed, true) if self.shard.is_some() => "SHARD DONE",
            (Outcome::Completed, true) => "PASSED",
            (Outcome::Completed, false) => "FAILED",
        }
    }

    /// The verdict as the JSON's `verdict` writes it: `passed`, `failed`, `invalid`,
    /// `interrupted`, `partial` or `shard_done`.
    pub fn verdict_key(&self) -> String {
        self.verdict_word().to_lowercase().replace(' ', "_")
    }

    /// Expectations judged here (a shard's are deferred to the merge).
    pub fn judged(&self) -> usize {
        self.phases.iter().flat_map(|p| &p.expectations).filter(|e| !e.deferred).count()
    }

    /// Expectations that failed, with their phase names (a shard's deferred ones are
    /// judged on the merged report, not here).
    pub fn failures(&self) -> impl Iterator<Item = (&str, &ExpectationResult)> {
        self.phases
            .iter()
            .flat_map(|p| p.expectations.iter().filter(|e| !e.passed && !e.deferred).map(move |e| (p.name.as_str(), e)))
    }

    /// Events that failed, with their phase names: each fails the run.
    pub fn failed_events(&self) -> impl Iterator<Item = (&str, &EventReport)> {
        self.phases.iter().flat_map(|p| p.events.iter().filter(|e| !e.ok).map(move |e| (p.name.as_str(), e)))
    }
}
