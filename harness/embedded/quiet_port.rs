//! A port for a target on this machine (the embedded target; a test's mosquitto): one
//! no socket of any state uses as either end, so that a census by the target's port
//! counts this target's sockets only (TIME_WAIT left toward an earlier target on the
//! same port lasts 60 s).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port [`quiet_port`] picks (below it: well-known and registered services).
const QUIET_PORTS_FROM: u16 = 10_000;

/// A free loopback port that no socket uses, below ip_local_port_range: there neither
/// the kernel (for any program's connect()) nor sockcap (for its explicit source ports)
/// hands ports out, so nothing takes it between this check and the target's bind.
/// Successive calls in one process try different ports. 0 (the kernel's choice) when
/// none is found.
pub fn quiet_port() -> u16 {
    static TRIED: AtomicU32 = AtomicU32::new(0);
    let lo = probe::Limits::read().ip_local_port_range.map_or(crate::sources::DEFAULT_RANGE.0, |r| r.0);
    let below = u32::from(lo.saturating_sub(QUIET_PORTS_FROM));
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    let mut prober = probe::Prober::new();
    for _ in 0..40 {
        let attempt = TRIED.fetch_add(1, Ordering::Relaxed);
        let port = match below {
            0..=999 => 0,
            n => QUIET_PORTS_FROM + (seed.wrapping_add(attempt.wrapping_mul(7_919)) % n) as u16,
        };
        let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else { continue };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else { break };
        let mut used = |filter: probe::Filter| prober.census(&filter).map_or(u64::MAX, |c| c.total());
        if used(probe::Filter::client(port)) == 0 && used(probe::Filter::server(port)) == 1 {
            return port;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_lies_below_the_ephemeral_range_and_changes_from_call_to_call() {
        let lo = probe::Limits::read().ip_local_port_range.map_or(crate::sources::DEFAULT_RANGE.0, |r| r.0);
        let port = quiet_port();
        assert!((QUIET_PORTS_FROM..lo).contains(&port), "port {port}, ephemeral range from {lo}");
        // Free, as it says.
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
        assert_ne!(quiet_port(), port);
    }
}
