//! Application protocols spoken over each connection.
//!
//! - `tcp`: connect only; the connection is held without traffic.
//! - `mqtt`: MQTT 3.1.1 CONNECT → CONNACK, PINGREQ → PINGRESP at the keep-alive
//!   interval, DISCONNECT. [`mqtt`] holds the codec, shared by the client engine
//!   and the embedded target.
//!
//! The client engine reaches a protocol through one seam, methods on [`Protocol`]
//! ([`client`]), in the terms of [`session`]; each protocol's client side is its own
//! file: [`tcp`], [`mqtt::client`].

pub mod client;
pub mod mqtt;
pub mod session;
pub mod tcp;

use serde::{Deserialize, Serialize};

/// The protocol of a scenario or of the embedded target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP connect only.
    Tcp,
    /// MQTT 3.1.1.
    Mqtt,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Mqtt => "mqtt",
        })
    }
}

/// What a held connection does when its peer closes its end (the peer's FIN arrives):
/// the embedded target for its clients, the client engine for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEof {
    /// Close its end too (as mosquitto does): the side that closed first ends in TIME_WAIT.
    #[default]
    Close,
    /// Keep its end open until the run ends: FIN_WAIT_2 on the side that closed, CLOSE_WAIT
    /// on this one (the shape of a peer that leaks connections).
    Hold,
}

impl std::fmt::Display for OnEof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnEof::Close => "close",
            OnEof::Hold => "hold",
        })
    }
}
