//! What a phase cost, measured by the coordinator (one per host): the target's
//! processes (found from its listening socket at the run's start) and sockcap's own
//! (this process and its worker processes), CPU time from phase start to phase end and
//! memory at the end; and the kernel memory of the connections on both sides, from
//! sock_diag at the phase's end only (a dump per side, like a census).
//!
//! A figure that cannot be read (no local target, its processes gone, /proc or
//! /proc/slabinfo unreadable) is an `Err` with the reason, never a zero.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use probe::{ProcessUsage, SocketMemory, TcpState};
use tokio::time::Instant;

use super::census::Censuses;
use crate::plan::ValidityLimits;
use crate::report::{spend, unobserved};
use crate::report::{GeneratorSpend, PhaseReport, SideMemory, TargetSpend};

/// CPU readings at a phase's start, to take the phase's deltas from.
#[derive(Debug)]
pub struct SpendMeter {
    started: Instant,
    /// The target's processes readable at the start, with their CPU time (µs).
    target: Result<Vec<(u32, u64)>, String>,
    /// sockcap's processes and their CPU time (µs).
    sockcap: Vec<(u32, u64)>,
    cores: u32,
}

impl SpendMeter {
    /// Read the CPU time of the target's processes (`Err`: why there are none to read)
    /// and of sockcap's.
    pub fn start(target_pids: Result<&[u32], String>, sockcap_pids: &[u32]) -> SpendMeter {
        let read = |pids: &[u32]| -> Vec<(u32, u64)> {
            pids.iter().filter_map(|pid| ProcessUsage::read(*pid).ok().map(|u| (*pid, u.cpu_us))).collect()
        };
        let target = target_pids.and_then(|pids| {
            let found = read(pids);
            if found.is_empty() {
                Err(format!(
                    "the target's processes ({}) could not be read from /proc: ended, or another user's",
                    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ))
            } else {
                Ok(found)
            }
        });
        SpendMeter { started: Instant::now(), target, sockcap: read(sockcap_pids), cores: probe::cpus_available() }
    }

    /// The target's spend over the phase, with the connections it holds now (the
    /// server-side ESTABLISHED, when counted).
    pub fn target(&self, connections: Option<u64>) -> Result<TargetSpend, String> {
        let start = self.target.as_ref().map_err(Clone::clone)?;
        let (cpu_us, now) = delta(start);
        if now.is_empty() {
            return Err("the target's processes ended during the phase: their spend cannot be read".to_string());
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let cpu_seconds = cpu_us as f64 / 1e6;
        let rss_bytes = now.iter().map(|u| u.rss_bytes).sum();
        let connections = connections.unwrap_or(0);
        Ok(TargetSpend {
            processes: now.len() as u32,
            rss_bytes,
            pss_bytes: now.iter().map(|u| u.pss_bytes).sum(),
            connections,
            rss_per_conn_bytes: (connections > 0).then(|| rss_bytes / connections),
            cpu_seconds: round(cpu_seconds, 3),
            cpu_percent: round(100.0 * cpu_seconds / elapsed, 1),
        })
    }

    /// sockcap's spend over the phase: CPU as a share of its cores, and its ports.
    pub fn generator(&self, ports_in_use: u64, port_budget: u64) -> Result<GeneratorSpend, String> {
        let (cpu_us, now) = delta(&self.sockcap);
        if now.is_empty() {
            return Err("sockcap's own /proc/PID/stat could not be read".to_string());
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let cpu_seconds = cpu_us as f64 / 1e6;
        Ok(GeneratorSpend {
            cpu_seconds: round(cpu_seconds, 3),
            cpu_percent: round(100.0 * cpu_seconds / elapsed / f64::from(self.cores), 1),
            cores: self.cores,
            ports_in_use,
            port_budget,
        })
    }
}

/// CPU µs spent since `start` by the processes still readable, and their readings now.
fn delta(start: &[(u32, u64)]) -> (u64, Vec<ProcessUsage>) {
    let now: Vec<(u64, ProcessUsage)> =
        start.iter().filter_map(|(pid, before)| ProcessUsage::read(*pid).ok().map(|u| (*before, u))).collect();
    let cpu = now.iter().map(|(before, u)| u.cpu_us.saturating_sub(*before)).sum();
    (cpu, now.into_iter().map(|(_, u)| u).collect())
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The processes listening on a local target, or why there are none to read (a remote
/// target, or one whose processes /proc does not show).
pub fn target_pids(target: SocketAddr) -> Result<Vec<u32>, String> {
    if !crate::socket::is_local(target.ip()) {
        return Err(format!("the target {target} is not on this machine: its processes cannot be read"));
    }
    let pids: Vec<u32> = probe::listeners_for(target)
        .map_err(|e| format!("the processes listening on {target} could not be found: {e}"))?
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    if pids.is_empty() {
        return Err(format!(
            "no process holding {target}'s listening socket was found in /proc \
             (another user's, or in another network namespace)"
        ));
    }
    Ok(pids)
}

/// One side's kernel memory: the buffers sock_diag reports, plus each full socket's own
/// `TCP`/`TCPv6` slab object (from /proc/slabinfo).
pub fn side_memory(memory: &SocketMemory, slab: &Result<BTreeMap<String, u64>, String>) -> Result<SideMemory, String> {
    let slab = slab.as_ref().map_err(|e| format!("the sockets' own memory needs /proc/slabinfo: {e}"))?;
    let size = |cache: &str| slab.get(cache).copied().ok_or_else(|| format!("/proc/slabinfo has no `{cache}` cache"));
    let object_bytes = memory.sockets_v4 * size("TCP")? + memory.sockets_v6 * size("TCPv6")?;
    Ok(SideMemory {
        sockets: memory.sockets(),
        buffer_bytes: memory.buffer_bytes,
        object_bytes,
        bytes: memory.buffer_bytes + object_bytes,
    })
}

/// Fill a finished phase's spend (the target's, the connections' kernel memory, sockcap's)
/// and judge its validity against `limits`. Figures that could not be read are marked
/// unobserved with the reason.
pub async fn measure(
    report: &mut PhaseReport,
    meter: &SpendMeter,
    censuses: &Censuses,
    port_budget: u64,
    limits: &ValidityLimits,
) {
    let observed = |report: &PhaseReport, figure: &str| report.unobserved.get(figure).is_none();
    let server_established = report
        .census
        .server
        .filter(|_| observed(report, unobserved::CENSUS_SERVER))
        .map(|s| s.get(TcpState::Established));
    match meter.target(server_established) {
        Ok(target) => report.target = Some(target),
        Err(why) => report.unobserved.mark(spend::TARGET, why),
    }
    let (client, server) = censuses.memory().await;
    let slab = probe::slabinfo::read_object_sizes().map_err(|e| e.to_string());
    let side = |read: Result<SocketMemory, String>| read.and_then(|m| side_memory(&m, &slab));
    match side(client) {
        Ok(m) => report.kernel_memory.client = Some(m),
        Err(why) => report.unobserved.mark(spend::KERNEL_MEMORY_CLIENT, format!("client side: {why}")),
    }
    match server.map(side) {
        Some(Ok(m)) => report.kernel_memory.server = Some(m),
        Some(Err(why)) => report.unobserved.mark(spend::KERNEL_MEMORY_SERVER, format!("server side: {why}")),
        None => report.unobserved.mark(
            spend::KERNEL_MEMORY_SERVER,
            "the target does not listen on this machine: its sockets' memory cannot be read",
        ),
    }
    let ports_in_use =
        if observed(report, unobserved::CENSUS_CLIENT) { report.census.client.total() } else { report.open_at_end };
    match meter.generator(ports_in_use, port_budget) {
        Ok(generator) => report.generator = Some(generator),
        Err(why) => report.unobserved.mark(spend::SOCKCAP_CPU, why),
    }
    let lateness = &report.latency_us.lateness;
    let p99 = (lateness.count > 0 && observed(report, "latency.lateness")).then_some(lateness.p99);
    report.invalid = limits.judge(p99, report.generator.as_ref(), report.duration_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_or_absent_targets_have_reasons_not_zeros() {
        let absent = SpendMeter::start(Err("the target is not on this machine".into()), &[std::process::id()]);
        assert_eq!(absent.target(Some(10)).unwrap_err(), "the target is not on this machine");
        let me = SpendMeter::start(Ok(&[std::process::id()]), &[std::process::id()]);
        let spend = me.target(Some(0)).unwrap();
        assert!(spend.rss_bytes > 0 && spend.rss_per_conn_bytes.is_none(), "{spend:?}");
        let four = me.target(Some(4)).unwrap();
        assert_eq!(four.rss_per_conn_bytes, Some(four.rss_bytes / 4));
        let gone = SpendMeter::start(Ok(&[u32::MAX - 1]), &[]);
        assert!(gone.target(None).unwrap_err().contains("could not be read"));
        assert!(gone.generator(0, 0).is_err());
    }

    #[test]
    fn memory_is_buffers_plus_objects() {
        let slab = Ok(BTreeMap::from([("TCP".to_string(), 2368), ("TCPv6".to_string(), 2496)]));
        let m = SocketMemory { sockets_v4: 2, sockets_v6: 1, buffer_bytes: 100 };
        let side = side_memory(&m, &slab).unwrap();
        assert_eq!((side.sockets, side.object_bytes, side.bytes), (3, 2 * 2368 + 2496, 100 + 2 * 2368 + 2496));
        assert!(side_memory(&m, &Err("Permission denied".into())).unwrap_err().contains("/proc/slabinfo"));
    }
}
