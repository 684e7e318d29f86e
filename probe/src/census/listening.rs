//! [`ListeningSocket`]: a listening TCP socket, as a census finds it, and which
//! connections reach it.

use std::net::{IpAddr, SocketAddr};

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ListeningSocket {
    /// The address and port it listens on (an unspecified address listens on all).
    pub local: SocketAddr,
    /// Its inode: `INODE` in the `socket:[INODE]` links under /proc/PID/fd of the
    /// processes that hold it.
    pub inode: u64,
    /// Its accept queue's capacity: the backlog given to listen(2), capped by
    /// net.core.somaxconn (`None` from /proc/net/tcp, which does not show it).
    pub backlog: Option<u32>,
}

impl ListeningSocket {
    /// Whether a connection to `addr` reaches this listener: the same port, and the same
    /// address or a wildcard one. An IPv6 wildcard is taken to accept IPv4 connections
    /// too (Linux's default, `net.ipv6.bindv6only = 0`; an IPV6_V6ONLY listener does not).
    pub fn accepts(&self, addr: SocketAddr) -> bool {
        if self.local.port() != addr.port() {
            return false;
        }
        let (mine, theirs) = (self.local.ip().to_canonical(), addr.ip().to_canonical());
        match mine {
            IpAddr::V4(ip) if ip.is_unspecified() => theirs.is_ipv4(),
            IpAddr::V6(ip) if ip.is_unspecified() => true,
            _ => mine == theirs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_accept_their_address_or_any() {
        let at = |s: &str| ListeningSocket { local: s.parse().unwrap(), inode: 1, backlog: None };
        let to = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(at("127.0.0.1:1883").accepts(to("127.0.0.1:1883")));
        assert!(!at("127.0.0.1:1883").accepts(to("127.0.0.2:1883")));
        assert!(!at("127.0.0.1:1883").accepts(to("127.0.0.1:1884")));
        assert!(at("0.0.0.0:1883").accepts(to("127.0.0.2:1883")));
        assert!(!at("0.0.0.0:1883").accepts(to("[::1]:1883")));
        assert!(at("[::]:1883").accepts(to("127.0.0.1:1883")));
        assert!(at("[::]:1883").accepts(to("[::1]:1883")));
        assert!(at("[::ffff:127.0.0.1]:1883").accepts(to("127.0.0.1:1883")));
        assert!(!at("[::1]:1883").accepts(to("127.0.0.1:1883")));
    }
}
