//! The server side of the protocol a connection speaks, chosen by [`Protocol`]:
//! one variant per protocol, each protocol in a file of its own. An enum, not a
//! boxed trait object: the state of an idle connection stays one byte, inside its
//! task, with no allocation of its own.

use std::sync::atomic::AtomicU64;

use crate::protocol::Protocol;

use super::exchange::{Replies, Step};
use super::mqtt::MqttServer;
use super::tcp::RawTcp;

/// The protocol state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerProtocol {
    /// `tcp`: held, input discarded.
    Tcp(RawTcp),
    /// `mqtt`: MQTT 3.1.1.
    Mqtt(MqttServer),
}

impl ServerProtocol {
    pub fn new(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Tcp => ServerProtocol::Tcp(RawTcp),
            Protocol::Mqtt => ServerProtocol::Mqtt(MqttServer::new()),
        }
    }

    /// Whether the protocol's handshake is still to come: a connection that
    /// does not read (`read: false`) reads until it is done.
    pub fn awaits_handshake(&self) -> bool {
        match self {
            ServerProtocol::Tcp(_) => false,
            ServerProtocol::Mqtt(server) => server.awaits_connect(),
        }
    }

    /// Handles every complete packet at the start of `data`, appending the
    /// answers to `replies` and counting answered CONNECTs in `connects`;
    /// returns how many bytes they used.
    pub fn on_packets(&mut self, data: &[u8], replies: &mut Replies, connects: &AtomicU64) -> (usize, Step) {
        match self {
            ServerProtocol::Tcp(tcp) => tcp.on_packets(data),
            ServerProtocol::Mqtt(server) => server.on_packets(data, replies, connects),
        }
    }
}
