//! [`Filter`]: which sockets a census counts, and the address rule the kernel applies.

use std::net::{IpAddr, SocketAddr};

/// Which sockets to count. Every `Some` field must match; the kernel does the filtering
/// (ports and addresses travel in the sock_diag request).
///
/// An IPv4 address also matches the IPv4-mapped address (`::ffff:a.b.c.d`) of an IPv6
/// socket, as in `ss`; an IPv4-mapped address in the filter is taken as the IPv4 address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// The socket's own port: the listening port for a server-side census.
    pub local_port: Option<u16>,
    /// The peer's port: the target's port for a client-side census.
    pub remote_port: Option<u16>,
    /// The socket's own address.
    pub local_addr: Option<IpAddr>,
    /// The peer's address.
    pub remote_addr: Option<IpAddr>,
}

impl Filter {
    /// The sockets of a server listening on `port`: the listener and its connections.
    pub fn server(port: u16) -> Filter {
        Filter { local_port: Some(port), ..Filter::default() }
    }

    /// The client sockets connected (or connecting) to `port`.
    pub fn client(port: u16) -> Filter {
        Filter { remote_port: Some(port), ..Filter::default() }
    }

    /// Whether a socket with these ends passes the filter (what the kernel's bytecode
    /// decides for a sock_diag census; used as is by the /proc fallback).
    pub fn matches(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.local_port.is_none_or(|p| p == local.port())
            && self.remote_port.is_none_or(|p| p == remote.port())
            && self.local_addr.is_none_or(|a| addr_matches(a, local.ip()))
            && self.remote_addr.is_none_or(|a| addr_matches(a, remote.ip()))
    }

    /// The filter with IPv4-mapped addresses written as IPv4 addresses.
    pub(crate) fn canonical(&self) -> Filter {
        Filter {
            local_addr: self.local_addr.map(|a| a.to_canonical()),
            remote_addr: self.remote_addr.map(|a| a.to_canonical()),
            ..*self
        }
    }

    /// Whether IPv4 sockets can match: not when the filter names an IPv6 address.
    pub(crate) fn wants_ipv4(&self) -> bool {
        let f = self.canonical();
        !matches!(f.local_addr, Some(IpAddr::V6(_))) && !matches!(f.remote_addr, Some(IpAddr::V6(_)))
    }

    /// Which end of a socket [`Prober::census_with_peers`] groups by.
    pub(crate) fn peer_side(&self) -> Side {
        if self.local_port.is_some() {
            Side::Remote
        } else {
            Side::Local
        }
    }
}

/// The kernel's address condition: same family and equal, or an IPv4 filter address
/// against an IPv4-mapped IPv6 socket address.
fn addr_matches(filter: IpAddr, socket: IpAddr) -> bool {
    match (filter.to_canonical(), socket) {
        (IpAddr::V4(f), IpAddr::V4(s)) => f == s,
        (IpAddr::V4(f), IpAddr::V6(s)) => s.to_ipv4_mapped() == Some(f),
        (IpAddr::V6(f), IpAddr::V6(s)) => f == s,
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

/// One end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Local,
    Remote,
}
