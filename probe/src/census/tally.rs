//! What a census counts ([`Tally`]: sockets by state, and by address when asked) and
//! what it returns ([`Census`], [`PeerCount`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::filter::Side;
use crate::state::{StateCounts, TcpState};

/// How many matching sockets one remote (or local) address holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerCount {
    /// The address (IPv4-mapped IPv6 addresses are given as IPv4).
    pub addr: IpAddr,
    /// Matching sockets with this address at the grouped end, in any state.
    pub sockets: u64,
}

/// One census: counts by state, and optionally the addresses holding most sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Matching sockets by state.
    pub states: StateCounts,
    /// Top peers by socket count, largest first (empty unless asked for).
    pub peers: Vec<PeerCount>,
    /// Wall time the census took, dumps and counting included.
    pub elapsed: Duration,
}

/// What a census accumulates: counts by state, and sockets by address when asked.
pub(super) struct Tally {
    pub(super) states: StateCounts,
    peers: Option<(Side, HashMap<IpAddr, u64>)>,
}

impl Tally {
    pub(super) fn new(peers: Option<Side>) -> Tally {
        Tally { states: StateCounts::default(), peers: peers.map(|side| (side, HashMap::new())) }
    }

    /// Count one socket; `addr` is asked for only when peers are grouped.
    #[inline]
    pub(super) fn add(&mut self, state: u8, addr: impl FnOnce(Side) -> IpAddr) {
        if let Some(state) = TcpState::from_kernel(state) {
            self.states.add(state);
        }
        if let Some((side, peers)) = &mut self.peers {
            let addr = addr(*side).to_canonical();
            if !addr.is_unspecified() {
                *peers.entry(addr).or_insert(0) += 1;
            }
        }
    }

    /// The `top` addresses holding most sockets, largest first (ties by address).
    pub(super) fn top_peers(self, top: usize) -> Vec<PeerCount> {
        let Some((_, peers)) = self.peers else {
            return Vec::new();
        };
        let mut peers: Vec<PeerCount> = peers.into_iter().map(|(addr, sockets)| PeerCount { addr, sockets }).collect();
        peers.sort_unstable_by(|a, b| b.sockets.cmp(&a.sockets).then(a.addr.cmp(&b.addr)));
        peers.truncate(top);
        peers
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn top_peers_are_largest_first() {
        let mut tally = Tally::new(Some(Side::Remote));
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let mapped_b = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 3).to_ipv6_mapped());
        for addr in [a, b, mapped_b, IpAddr::V4(Ipv4Addr::UNSPECIFIED)] {
            tally.add(TcpState::Established as u8, |_| addr);
        }
        assert_eq!(tally.states.get(TcpState::Established), 4);
        assert_eq!(tally.top_peers(5), [PeerCount { addr: b, sockets: 2 }, PeerCount { addr: a, sockets: 1 }]);
    }
}
