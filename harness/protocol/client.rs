//! The client side of each protocol behind one seam, chosen by [`Protocol`]: whether
//! a session opens with a hello, the hello's bytes, how the target's answer reads,
//! the keep-alive ping, what a held connection takes from its socket, and the polite
//! goodbye. Each arm calls its protocol's own file ([`tcp`],
//! [`mqtt::client`](super::mqtt::client)); a new protocol (MQTT 5) is a new file and
//! an arm in each match here. A `match` on a `Copy` enum rather than a trait object:
//! nothing is boxed or looked up on the hold loop's path.

use tokio::net::TcpStream;

use super::mqtt::client as mqtt;
use super::session::{Answer, Hello, Readout};
use super::{tcp, Protocol};

impl Protocol {
    /// Whether a session opens with a hello and the target's answer; raw TCP's is open
    /// once connected.
    pub fn greets(self) -> bool {
        match self {
            Protocol::Tcp => false,
            Protocol::Mqtt => true,
        }
    }

    /// Appends the hello that opens a session (nothing where [`Protocol::greets`] is false).
    pub fn hello(self, hello: &Hello, out: &mut Vec<u8>) {
        match self {
            Protocol::Tcp => tcp::hello(hello, out),
            Protocol::Mqtt => mqtt::hello(hello, out),
        }
    }

    /// What the bytes received since the hello say, from the first.
    pub fn answer(self, received: &[u8]) -> Answer {
        match self {
            Protocol::Tcp => tcp::answer(received),
            Protocol::Mqtt => mqtt::answer(received),
        }
    }

    /// The keep-alive ping a held connection sends, if the protocol has one.
    pub fn ping(self) -> Option<&'static [u8]> {
        match self {
            Protocol::Tcp => None,
            Protocol::Mqtt => Some(mqtt::PING),
        }
    }

    /// What a client says before it closes, if the protocol has a polite goodbye.
    pub fn goodbye(self) -> Option<&'static [u8]> {
        match self {
            Protocol::Tcp => None,
            Protocol::Mqtt => Some(mqtt::GOODBYE),
        }
    }

    /// Whether the plaintext a TLS connection read (whole packets from its first byte)
    /// holds the answer to a keep-alive ping.
    pub fn pong_in(self, plaintext: &[u8]) -> bool {
        match self {
            Protocol::Tcp => false,
            Protocol::Mqtt => mqtt::pong_in(plaintext),
        }
    }

    /// Take what a held connection received, without blocking.
    pub fn receive(self, stream: &TcpStream) -> Readout {
        match self {
            Protocol::Tcp => tcp::receive(stream),
            Protocol::Mqtt => mqtt::receive(stream),
        }
    }
}
