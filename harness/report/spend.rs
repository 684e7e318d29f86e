//! What a phase cost: the target's processes ([`TargetSpend`]: RSS, CPU, RSS per held
//! connection), the kernel memory of the connections on both sides ([`KernelMemory`]),
//! and sockcap's own spend ([`GeneratorSpend`]: its CPU share and ports), from which
//! the run's validity is judged ([`Validity`]): a run whose generator was the
//! bottleneck is `invalid`, whatever its expectations say.
//!
//! Figures that could not be read are not zeros: the phase's `unobserved` map names
//! them (`target`, `kernel_memory.client`, `kernel_memory.server`, `sockcap.cpu`).

use serde::{Deserialize, Serialize};

pub use crate::plan::ValidityLimits;

/// The unobserved figure of the target's spend.
pub const TARGET: &str = "target";
/// The unobserved figure of the client side's kernel memory.
pub const KERNEL_MEMORY_CLIENT: &str = "kernel_memory.client";
/// The unobserved figure of the server side's kernel memory.
pub const KERNEL_MEMORY_SERVER: &str = "kernel_memory.server";
/// The unobserved figure of sockcap's own CPU.
pub const SOCKCAP_CPU: &str = "sockcap.cpu";

/// The processes behind the target's listening sockets, over one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetSpend {
    /// Processes read (those found listening at the run's start and still alive).
    pub processes: u32,
    /// Their resident set sizes when the phase ended, summed.
    pub rss_bytes: u64,
    /// Their proportional set sizes, summed; null when /proc/PID/smaps_rollup could not be read.
    pub pss_bytes: Option<u64>,
    /// Connections the target held when the phase ended (server-side ESTABLISHED).
    pub connections: u64,
    /// `rss_bytes / connections`; null when it held none.
    pub rss_per_conn_bytes: Option<u64>,
    /// User + system CPU time over the phase, summed.
    pub cpu_seconds: f64,
    /// `cpu_seconds` as a percentage of one core over the phase (200: two cores busy).
    pub cpu_percent: f64,
}

/// The kernel memory of the connections, each side (sock_diag `INET_DIAG_SKMEMINFO` plus
/// the sockets' own objects, from /proc/slabinfo), when the phase ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelMemory {
    /// Client side (sockets toward the target's port); null when not read.
    pub client: Option<SideMemory>,
    /// Server side (sockets on the target's port); null when not read or not local.
    pub server: Option<SideMemory>,
}

/// One side's kernel memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideMemory {
    /// Full sockets counted (TIME_WAIT and request sockets are left out).
    pub sockets: u64,
    /// Their buffers: receive and send queues, forward allocation, options.
    pub buffer_bytes: u64,
    /// Their `TCP`/`TCPv6` slab objects (sockets × object size).
    pub object_bytes: u64,
    /// `buffer_bytes + object_bytes`.
    pub bytes: u64,
}

/// sockcap's own spend over one phase: is the generator the bottleneck?
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSpend {
    /// CPU time of the coordinator and its worker processes over the phase.
    pub cpu_seconds: f64,
    /// `cpu_seconds` as a percentage of the cores sockcap may use (`cores`).
    pub cpu_percent: f64,
    /// CPUs in sockcap's affinity mask.
    pub cores: u32,
    /// Client-side sockets toward the target when the phase ended (each holds a port).
    pub ports_in_use: u64,
    /// Source addresses × the ephemeral range: the ports sockcap may take.
    pub port_budget: u64,
}

/// The shortest phase whose CPU share is judged for validity.
pub const CPU_JUDGED_FROM_MS: u64 = 1_000;

/// The sentence a report opens with when its run was invalid.
pub const INVALID_PREFIX: &str = "the generator was the bottleneck";

impl ValidityLimits {
    /// Why this phase's figures are sockcap's, not the target's; `None` when valid. CPU
    /// is judged in phases of [`CPU_JUDGED_FROM_MS`] or more only: /proc counts CPU time in
    /// clock ticks (10 ms), so one tick in a 10 ms phase would read as a saturated core.
    pub fn judge(
        &self,
        lateness_p99_us: Option<u64>,
        generator: Option<&GeneratorSpend>,
        duration_ms: u64,
    ) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(p99) = lateness_p99_us.filter(|p| *p as f64 > self.lateness_p99_us) {
            reasons.push(format!(
                "its schedule ran late: lateness p99 {} > {}",
                crate::report::format::micros(p99),
                crate::report::format::micros(self.lateness_p99_us as u64)
            ));
        }
        let long_enough = duration_ms >= CPU_JUDGED_FROM_MS;
        if let Some(g) = generator.filter(|g| long_enough && g.cpu_percent > self.cpu_percent) {
            reasons.push(format!(
                "its CPU was saturated: {:.0}% of {} cores > {:.0}%",
                g.cpu_percent, g.cores, self.cpu_percent
            ));
        }
        (!reasons.is_empty()).then(|| format!("{INVALID_PREFIX}: {}", reasons.join("; ")))
    }
}

/// The spend of targets on several hosts, each seen by its own shard: summed, when
/// every part measured one (`None` otherwise).
pub fn sum_targets<'a>(parts: impl Iterator<Item = Option<&'a TargetSpend>>) -> Option<TargetSpend> {
    let mut sum = TargetSpend { pss_bytes: Some(0), ..TargetSpend::default() };
    for part in parts {
        let part = part?;
        sum.processes += part.processes;
        sum.rss_bytes = sum.rss_bytes.saturating_add(part.rss_bytes);
        sum.pss_bytes = sum.pss_bytes.zip(part.pss_bytes).map(|(a, b)| a.saturating_add(b));
        sum.connections = sum.connections.saturating_add(part.connections);
        sum.cpu_seconds += part.cpu_seconds;
        sum.cpu_percent += part.cpu_percent;
    }
    sum.rss_per_conn_bytes = (sum.connections > 0).then(|| sum.rss_bytes / sum.connections);
    (sum.processes > 0).then_some(sum)
}

/// Kernel memory of several hosts: each side summed when every part read it.
pub fn sum_kernel_memory<'a>(parts: impl Iterator<Item = &'a KernelMemory>) -> KernelMemory {
    let parts: Vec<&KernelMemory> = parts.collect();
    let side = |of: fn(&KernelMemory) -> Option<SideMemory>| {
        parts.iter().map(|p| of(p)).try_fold(SideMemory::default(), |sum, part| {
            let part = part?;
            Some(SideMemory {
                sockets: sum.sockets + part.sockets,
                buffer_bytes: sum.buffer_bytes.saturating_add(part.buffer_bytes),
                object_bytes: sum.object_bytes.saturating_add(part.object_bytes),
                bytes: sum.bytes.saturating_add(part.bytes),
            })
        })
    };
    if parts.is_empty() {
        return KernelMemory::default();
    }
    KernelMemory { client: side(|k| k.client), server: side(|k| k.server) }
}

/// Bytes as a person reads them: `812 B`, `9.6 KiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_when_late_or_saturated_only() {
        let limits = ValidityLimits::default();
        let busy = GeneratorSpend { cpu_percent: 97.0, cores: 1, ..Default::default() };
        let calm = GeneratorSpend { cpu_percent: 12.0, cores: 2, ..Default::default() };
        assert_eq!(limits.judge(Some(2_000), Some(&calm), 5_000), None);
        assert_eq!(limits.judge(None, None, 5_000), None);
        assert_eq!(limits.judge(Some(400_000), Some(&calm), 5_000), None, "a busy machine's 400 ms");
        let late = limits.judge(Some(1_250_000), Some(&calm), 5_000).unwrap();
        assert!(late.starts_with("the generator was the bottleneck: its schedule ran late"), "{late}");
        let both = limits.judge(Some(1_250_000), Some(&busy), 5_000).unwrap();
        assert!(both.contains("late") && both.contains("97% of 1 cores > 90%"), "{both}");
        assert_eq!(limits.judge(None, Some(&busy), 20), None, "a tick in a 20 ms phase is no reading");
    }

    #[test]
    fn hosts_sum_only_when_each_measured_its_target() {
        let one = TargetSpend {
            processes: 1,
            rss_bytes: 1000,
            pss_bytes: Some(600),
            connections: 10,
            rss_per_conn_bytes: Some(100),
            cpu_seconds: 0.5,
            cpu_percent: 25.0,
        };
        let two = TargetSpend { pss_bytes: None, rss_bytes: 3000, connections: 20, ..one.clone() };
        let sum = sum_targets([Some(&one), Some(&two)].into_iter()).unwrap();
        assert_eq!((sum.processes, sum.rss_bytes, sum.connections, sum.rss_per_conn_bytes), (2, 4000, 30, Some(133)));
        assert_eq!((sum.pss_bytes, sum.cpu_seconds, sum.cpu_percent), (None, 1.0, 50.0));
        assert_eq!(sum_targets([Some(&one), None].into_iter()), None, "a host that did not measure its target");
        let side = SideMemory { sockets: 10, buffer_bytes: 5, object_bytes: 20, bytes: 25 };
        let read = KernelMemory { client: Some(side), server: Some(side) };
        let client_only = KernelMemory { client: Some(side), server: None };
        let sum = sum_kernel_memory([&read, &client_only].into_iter());
        assert_eq!((sum.client.map(|c| c.bytes), sum.server), (Some(50), None));
    }

    #[test]
    fn the_text_shows_spend_and_the_invalid_verdict() {
        let mut report = crate::report::test_support::sample_report();
        let why = ValidityLimits::default().judge(Some(1_300_000), None, 5_000).unwrap();
        report.phases[0].invalid = Some(why.clone());
        report.invalid = Some(format!("{why} (phase `ramp`)"));
        report.passed = false;
        report.phases[0].target = Some(TargetSpend {
            processes: 1,
            rss_bytes: 3 << 20,
            connections: 300,
            rss_per_conn_bytes: Some(10_485),
            cpu_seconds: 0.25,
            cpu_percent: 12.5,
            pss_bytes: None,
        });
        let side = SideMemory { sockets: 300, buffer_bytes: 0, object_bytes: 710_400, bytes: 710_400 };
        report.phases[0].kernel_memory = KernelMemory { client: Some(side), server: Some(side) };
        let text = crate::report::text::render(&report);
        assert!(text.contains("  spend    target 1 process: RSS 3.0 MiB, 10.2 KiB per connection (300 held); CPU 0.25s, 12.5% of a core"), "{text}");
        assert!(text.contains("  kmem     client 300 sockets 693.8 KiB (0 B buffers); server 300 sockets"), "{text}");
        assert!(text.contains("\nINVALID: the generator was the bottleneck: its schedule ran late: lateness p99 1.30s > 1.00s (phase `ramp`)\n"), "{text}");
        assert_eq!((report.verdict_word(), report.verdict_key().as_str()), ("INVALID", "invalid"));
    }

    #[test]
    fn bytes_read_as_binary_units() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(9_830), "9.6 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
