//! Application protocols spoken over each connection.
//!
//! - `tcp`: connect only; the connection is held without traffic.
//! - `mqtt`: MQTT 3.1.1 CONNECT → CONNACK, PINGREQ → PINGRESP at the keep-alive
//!   interval, DISCONNECT. [`mqtt`] holds the codec, shared by the client engine
//!   and the embedded target.

pub mod mqtt;

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
