//! MQTT 3.1.1 and MQTT 5 packet codec: encoders for what the client engine and the
//! embedded target send, and a decoder for what they receive. Pure: bytes in,
//! bytes or [`Packet`]s out, no I/O.
//!
//! Why our own codec rather than a crate such as rumqttc's `mqttbytes`: sockcap's
//! budget is about 1 KiB of user memory per idle connection, and it needs six
//! packet types (CONNECT, CONNACK, PINGREQ, PINGRESP, DISCONNECT, and "anything
//! else" to skip). The general codecs decode into owned, `Bytes`-backed packets
//! and expect a `BytesMut` read buffer per connection, which alone would eat the
//! budget. This one decodes from a borrowed slice, so a connection can read into
//! a shared scratch buffer and keep bytes only while a packet is split across
//! reads. It is small enough to review and is fuzzed by the property tests
//! (`properties.rs`).
//!
//! The decoder is strict where the specification says a receiver must close the
//! connection (fixed-header flags, reserved CONNECT flag bits, field lengths
//! running past the packet) and caps packets at [`MAX_PACKET_LEN`]: a load tool
//! never needs large packets, and the cap bounds what a peer can make us buffer.
//!
//! The codec is `packet.rs` (packet values and constants), `encode.rs` and
//! `decode.rs`, re-exported here, with MQTT 5's properties in `v5.rs` and the names
//! of return and reason codes in `reason.rs`; [`client`] is the client engine's side
//! of MQTT 3.1.1 and 5 (CONNECT, CONNACK, keep-alive, DISCONNECT, taking whole
//! packets from the socket). One decoder reads both versions (a CONNECT names its
//! level; a server's packets tell theirs by their layout), so the embedded target
//! answers each client in the version of its CONNECT.

pub mod client;
mod decode;
mod encode;
mod packet;
#[cfg(test)]
mod properties;
mod reason;
pub mod traffic;
mod v5;
#[cfg(test)]
mod v5_golden;

pub use decode::{decode, packet_bounds, DecodeError};
pub use encode::{encode_connack, encode_connack_v5_assigned, encode_connect};
pub use packet::{
    connack, connack_reason, connack_v5, disconnect_v5, Connect, Packet, CONNECT_HEADER, DISCONNECT, MAX_FIELD_LEN,
    MAX_PACKET_LEN, PINGREQ, PINGRESP, PROTOCOL_LEVEL, PROTOCOL_LEVEL_5,
};
pub use reason::reason_name;
pub use v5::{ConnAckProperties, ConnectProperties};
