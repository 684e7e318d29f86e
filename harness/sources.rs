//! Client source addresses and ports: which local (address, port) connection number
//! `g` of a run binds before it connects.
//!
//! The kernel's port search for connect() slows from ~40,000 to ~1,200 connects/s once
//! one (source, destination) pair holds half the ephemeral range (measured here), with
//! plain connect() and IP_BIND_ADDRESS_NO_PORT alike. Binding a port that sockcap
//! chooses itself (SO_REUSEADDR, bind(source, port), connect) stays flat up to 60,000
//! connections per pair. So when a run has source addresses, connection `g` binds
//! `addrs[g % S]` and port `lo + (g / S) % R` of ip_local_port_range `lo..=hi` (R ports):
//! unique for the first S × R connections of a run, across worker processes and hosts
//! alike, since `g` is global. Without source addresses the kernel chooses (one pair,
//! at most R connections).
//!
//! Churn phases leave the port to the kernel (bind(address) with IP_BIND_ADDRESS_NO_PORT,
//! the port chosen at connect): measured here, a connect from an explicitly bound port
//! takes over a TIME_WAIT socket of the same 4-tuple at once, even with tcp_tw_reuse = 0
//! (the kernel's TIME_WAIT check waives its one-second rule for bound sockets when
//! timestamps are on), so explicit ports would hide the very exhaustion a churn phase
//! is there to show. They still set SO_REUSEADDR, like every bound client socket, so
//! that a later phase's explicit ports can share their TIME_WAIT ports (see
//! `transport::tcp::open_socket`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The ephemeral range assumed when /proc does not say (the kernel's default).
pub const DEFAULT_RANGE: (u16, u16) = (32_768, 60_999);

/// Where client connections bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Source addresses, used round-robin by connection number; empty: the kernel's choice.
    pub addrs: Vec<IpAddr>,
    /// The ports handed out per address (inclusive), from ip_local_port_range.
    pub ports: (u16, u16),
}

impl Sources {
    pub fn new(addrs: Vec<IpAddr>, ports: (u16, u16)) -> Sources {
        Sources { addrs, ports }
    }

    /// Ports per source address.
    pub fn range_size(&self) -> u64 {
        u64::from(self.ports.1.saturating_sub(self.ports.0)) + 1
    }

    /// The local address connection `g` binds, or `None` for the kernel's choice.
    /// With `kernel_port` the port is 0: the kernel picks it at connect time.
    pub fn local_for(&self, g: u64, kernel_port: bool) -> Option<SocketAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let s = self.addrs.len() as u64;
        let port = if kernel_port { 0 } else { u64::from(self.ports.0) + (g / s) % self.range_size() };
        Some(SocketAddr::new(self.addrs[(g % s) as usize], port as u16))
    }

    /// Connections that can be open at once toward one destination.
    pub fn capacity(&self) -> u64 {
        self.range_size() * (self.addrs.len() as u64).max(1)
    }
}

/// Source addresses sockcap picks itself for a loopback IPv4 target: none (the kernel's
/// choice) while `held` connections stay under 80% of half the range on one pair, else
/// enough 127.x.0.y addresses (from 127.0.0.2, away from the busy 127.0.0.1) that no
/// pair holds more than half the range. Host shard `host` (of a sharded run sharing
/// this loopback) starts at 127.`host`.0.2 instead, so shards never bind the same
/// address and port.
pub fn auto(held: u64, target: SocketAddr, ports: (u16, u16), host: u32) -> Vec<IpAddr> {
    let IpAddr::V4(v4) = target.ip() else { return Vec::new() };
    if !v4.is_loopback() {
        return Vec::new();
    }
    let half = (Sources::new(Vec::new(), ports).range_size() / 2).max(1);
    if held <= half * 4 / 5 {
        return Vec::new();
    }
    let needed = held.div_ceil(half).clamp(2, 65_000);
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2)) + (host % 255) * 65_536;
    (0..needed as u32).map(|i| IpAddr::V4(Ipv4Addr::from(first + i))).collect()
}

/// Addresses written as `sources` items: runs of consecutive IPv4 addresses as one
/// range ("127.0.0.2-127.0.0.40"), comma-separated.
pub fn compact(addrs: &[IpAddr]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut run: Option<(Ipv4Addr, Ipv4Addr)> = None;
    let flush = |run: &mut Option<(Ipv4Addr, Ipv4Addr)>, items: &mut Vec<String>| {
        if let Some((a, b)) = run.take() {
            items.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
        }
    };
    for addr in addrs {
        match (addr, run) {
            (IpAddr::V4(v4), Some((a, b))) if u32::from(b).checked_add(1) == Some(u32::from(*v4)) => {
                run = Some((a, *v4));
            }
            (IpAddr::V4(v4), _) => {
                flush(&mut run, &mut items);
                run = Some((*v4, *v4));
            }
            (IpAddr::V6(v6), _) => {
                flush(&mut run, &mut items);
                items.push(v6.to_string());
            }
        }
    }
    flush(&mut run, &mut items);
    items.join(",")
}

/// More connections open at once toward one destination than the source ports allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the scenario holds up to {held} connections to {target}, but {addrs} source address{plural} \
     × {range} ports (ip_local_port_range {lo}-{hi}) give at most {capacity}. Fix: {fix}"
)]
pub struct PortBudgetError {
    pub held: u64,
    pub target: SocketAddr,
    pub addrs: usize,
    pub plural: &'static str,
    pub range: u64,
    pub lo: u16,
    pub hi: u16,
    pub capacity: u64,
    pub fix: String,
}

/// Refuse `held` connections that the sources cannot carry, before any socket opens.
pub fn check_budget(held: u64, sources: &Sources, target: SocketAddr) -> Result<(), PortBudgetError> {
    let capacity = sources.capacity();
    if held <= capacity {
        return Ok(());
    }
    let addrs_needed = held.div_ceil(sources.range_size());
    let fix = if target.is_ipv4() {
        format!(
            "give at least {addrs_needed} source addresses (`sources = [\"127.0.0.2-127.0.0.{}\"]` for a loopback \
             target, or addresses of this host's interfaces), or widen net.ipv4.ip_local_port_range",
            (addrs_needed + 1).min(254)
        )
    } else {
        format!("give at least {addrs_needed} source addresses in `sources`, or widen net.ipv4.ip_local_port_range")
    };
    Err(PortBudgetError {
        held,
        target,
        addrs: sources.addrs.len().max(1),
        plural: if sources.addrs.len() > 1 { "es" } else { "" },
        range: sources.range_size(),
        lo: sources.ports.0,
        hi: sources.ports.1,
        capacity,
        fix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_get_distinct_address_port_pairs() {
        let sources = Sources::new(vec![v4("127.0.0.2"), v4("127.0.0.3")], (1000, 1009));
        assert_eq!(sources.local_for(0, false), Some("127.0.0.2:1000".parse().unwrap()));
        assert_eq!(sources.local_for(1, false), Some("127.0.0.3:1000".parse().unwrap()));
        assert_eq!(sources.local_for(2, false), Some("127.0.0.2:1001".parse().unwrap()));
        let pairs: std::collections::HashSet<_> = (0..20).map(|g| sources.local_for(g, false).unwrap()).collect();
        assert_eq!(pairs.len(), 20);
        // the 21st wraps around to the first pair
        assert_eq!(sources.local_for(20, false), sources.local_for(0, false));
        assert_eq!(Sources::new(Vec::new(), DEFAULT_RANGE).local_for(5, false), None);
        assert_eq!(sources.local_for(3, true), Some("127.0.0.3:0".parse().unwrap()));
    }

    #[test]
    fn loopback_targets_spread_over_enough_sources() {
        let target: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        assert!(auto(10_000, target, DEFAULT_RANGE, 0).is_empty());
        let got = auto(100_000, target, DEFAULT_RANGE, 0);
        assert_eq!(got.len(), 8);
        assert_eq!(got[0], v4("127.0.0.2"));
        // A target that is not a loopback address gets no 127.x sources (the unspecified
        // address here; a pure function: nothing connects).
        assert!(auto(100_000, "0.0.0.0:1883".parse().unwrap(), DEFAULT_RANGE, 0).is_empty());
        // past 127.0.0.255 the addresses carry on into 127.0.1.x
        assert_eq!(auto(5_000_000, target, DEFAULT_RANGE, 0)[300], v4("127.0.1.46"));
        // host shard 2 of a run sharing this loopback has a block of its own
        assert_eq!(auto(100_000, target, DEFAULT_RANGE, 2)[0], v4("127.2.0.2"));
    }

    #[test]
    fn address_lists_compact_into_ranges() {
        let addrs =
            crate::plan::parse_sources(&["127.0.0.2-127.0.1.5".into(), "::1".into(), "127.1.0.9".into()]).unwrap();
        let text = compact(&addrs);
        assert_eq!(text, "127.0.0.2-127.0.1.5,::1,127.1.0.9");
        let items: Vec<String> = text.split(',').map(str::to_string).collect();
        assert_eq!(crate::plan::parse_sources(&items).unwrap(), addrs);
    }

    #[test]
    fn a_count_past_the_ports_is_refused_with_the_fix() {
        let target: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let one = Sources::new(Vec::new(), DEFAULT_RANGE);
        assert!(check_budget(28_232, &one, target).is_ok());
        let err = check_budget(30_000, &one, target).unwrap_err().to_string();
        assert!(err.contains("at most 28232"), "{err}");
        assert!(err.contains("at least 2 source addresses"), "{err}");
        let two = Sources::new(vec![v4("127.0.0.2"), v4("127.0.0.3")], DEFAULT_RANGE);
        assert!(check_budget(30_000, &two, target).is_ok());
    }
}
