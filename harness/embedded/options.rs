//! What the embedded target is asked to do ([`ServeOptions`]) and what it did
//! ([`ServeSummary`]), with the limits of its flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::{OnEof, Protocol};
use crate::socket::DEFAULT_BACKLOG;
use crate::transport::Transport;

/// What the embedded target listens on, speaks, and how it treats connections.
///
/// [`ServeOptions::default`] is a polite MQTT server on a free loopback port;
/// the fields after `on_eof` make it misbehave on purpose, each default being
/// the polite behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to bind; port 0 picks a free port, reported by the ready line.
    pub listen: SocketAddr,
    /// Protocol spoken on every accepted connection.
    pub protocol: Protocol,
    /// What the protocol runs over (`--transport`): TCP, or TLS with the certificate
    /// given or made at start (see `embedded/tls.rs`).
    pub transport: Transport,
    /// Listen backlog (accept queue length), clamped by the kernel to
    /// `net.core.somaxconn`. The queue is full once it holds `backlog + 1`
    /// connections.
    pub backlog: u32,
    /// What a connection does when the client's FIN arrives (only noticed while
    /// it reads: see `read`).
    pub on_eof: OnEof,
    /// Accept connections (`--no-accept`: false). When false the target listens
    /// and never calls accept(): `backlog + 1` handshakes complete into the
    /// accept queue, then the kernel drops further SYNs and those clients stay
    /// in SYN_SENT, retrying. The options below then have nothing to act on.
    pub accept: bool,
    /// TCP_DEFER_ACCEPT on the listener (`--defer-accept`; whole seconds,
    /// rounded up; zero turns it off): a client that completes the handshake
    /// and sends nothing stays a SYN_RECV request socket here, ESTABLISHED on
    /// its side, until it sends data or the delay ends.
    pub defer_accept: Option<Duration>,
    /// Read from accepted connections (`--no-read`: false). When false the
    /// target never reads (for `mqtt`: once it has sent CONNACK), so the
    /// client's data fills the receive window and a client FIN queues behind
    /// its unsent data; the peer's FIN is then never noticed, and `on_eof`
    /// never applies.
    pub read: bool,
    /// That long after accepting a connection, shut down its write side
    /// (`--shutdown-after`): the target sends FIN first, keeps the socket, and
    /// goes on reading (or not, per `read`). Pending MQTT replies are dropped,
    /// and a later reply closes the connection.
    pub shutdown_after: Option<Duration>,
    /// Processes listening on the address together (`--workers`, at least 1):
    /// this one and `workers - 1` children, each with its own descriptor limit.
    /// SO_REUSEPORT hashes each new connection to one listener, so each holds
    /// about an equal share; every listener has its own accept queue, so with
    /// `accept` false `workers × (backlog + 1)` handshakes fill them.
    pub workers: u32,
}

impl Default for ServeOptions {
    /// A polite MQTT target on a free port of 127.0.0.1.
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            protocol: Protocol::Mqtt,
            transport: Transport::Tcp,
            backlog: DEFAULT_BACKLOG,
            on_eof: OnEof::Close,
            accept: true,
            defer_accept: None,
            read: true,
            shutdown_after: None,
            workers: 1,
        }
    }
}

/// What a [`serve`](super::serve) run did, returned at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeSummary {
    /// Connections accepted.
    pub accepted: u64,
    /// MQTT CONNECTs answered with CONNACK 0 (always 0 for `tcp`).
    pub connects: u64,
    /// Failed accept calls (EMFILE, ENFILE, ...). While a resource stays
    /// exhausted every retry, one per backoff interval, counts again.
    pub accept_errors: u64,
}

impl ServeSummary {
    /// Adds another process's figures to these.
    pub(super) fn add(&mut self, other: ServeSummary) {
        self.accepted += other.accepted;
        self.connects += other.connects;
        self.accept_errors += other.accept_errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_add_up() {
        let mut total = ServeSummary { accepted: 1, connects: 2, accept_errors: 3 };
        total.add(ServeSummary { accepted: 10, connects: 20, accept_errors: 30 });
        assert_eq!(total, ServeSummary { accepted: 11, connects: 22, accept_errors: 33 });
    }
}
