//! MQTT 5 properties (§2.2.2) as values: the CONNECT properties sockcap sends
//! ([`ConnectProperties`]), the CONNACK properties it honours
//! ([`ConnAckProperties`]), and the shape of every property's value by identifier.
//! `encode.rs` writes property lists, `decode.rs` reads and checks them (known
//! identifiers, values within the list); the golden-byte tests of MQTT 5 packets are
//! in `v5_golden.rs`.

/// Session Expiry Interval (u32 seconds).
pub(super) const SESSION_EXPIRY: u8 = 0x11;
/// Assigned Client Identifier (string).
pub(super) const ASSIGNED_CLIENT_ID: u8 = 0x12;
/// Server Keep Alive (u16 seconds).
pub(super) const SERVER_KEEP_ALIVE: u8 = 0x13;
/// Receive Maximum (u16).
pub(super) const RECEIVE_MAXIMUM: u8 = 0x21;
/// User Property (string pair).
pub(super) const USER_PROPERTY: u8 = 0x26;
/// Maximum Packet Size (u32).
pub(super) const MAXIMUM_PACKET_SIZE: u8 = 0x27;

/// The CONNECT properties a scenario asks for (`[mqtt]` with `version = 5`); an
/// absent one is not sent, and the broker applies the specification's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds (absent: 0, the session ends with the connection).
    pub session_expiry_s: Option<u32>,
    /// Receive Maximum: QoS 1/2 publications in flight the client accepts (1..=65535).
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size the client accepts (1..).
    pub maximum_packet_size: Option<u32>,
    /// User Properties, in order; names may repeat.
    pub user_properties: Vec<(String, String)>,
}

/// What sockcap reads of a CONNACK's properties; the others are checked and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// Server Keep Alive: the keep-alive the client must use instead of its own.
    pub server_keep_alive_s: Option<u16>,
    /// Assigned Client Identifier, when the client sent an empty one.
    pub assigned_client_id: Option<String>,
    /// Receive Maximum of the server.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<u32>,
}

/// The shape of a property's value, by identifier (§2.2.2.2); `None`: not an MQTT 5 property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Byte,
    U16,
    U32,
    VarInt,
    Utf8,
    Binary,
    Pair,
}

pub(super) fn shape(id: u8) -> Option<Shape> {
    Some(match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Shape::Byte,
        0x13 | 0x21 | 0x22 | 0x23 => Shape::U16,
        0x02 | 0x11 | 0x18 | 0x27 => Shape::U32,
        0x0B => Shape::VarInt,
        0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Shape::Utf8,
        0x09 | 0x16 => Shape::Binary,
        0x26 => Shape::Pair,
        _ => return None,
    })
}
