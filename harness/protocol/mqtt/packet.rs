//! MQTT 3.1.1 and 5 packets as values and constants: the packet types sockcap acts on
//! ([`Packet`]), the CONNECT it sends ([`Connect`]), the fixed packets (PINGREQ,
//! PINGRESP, DISCONNECT, CONNACK) and the limits the codec keeps to. MQTT 5's
//! properties are in [`v5`](super::v5).

use super::v5::{ConnAckProperties, ConnectProperties};

/// Largest packet, fixed header included, that [`decode`](super::decode) accepts.
pub const MAX_PACKET_LEN: usize = 64 * 1024;

/// Longest string or binary field MQTT can encode (2-byte length prefix).
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// The protocol level of MQTT 3.1.1.
pub const PROTOCOL_LEVEL: u8 = 4;

/// The protocol level of MQTT 5.
pub const PROTOCOL_LEVEL_5: u8 = 5;

/// The first byte of every CONNECT packet (type 1, no flags).
pub const CONNECT_HEADER: u8 = CONNECT_TYPE << 4;

/// A complete PINGREQ packet.
pub const PINGREQ: [u8; 2] = [PINGREQ_TYPE << 4, 0];
/// A complete PINGRESP packet.
pub const PINGRESP: [u8; 2] = [PINGRESP_TYPE << 4, 0];
/// A complete DISCONNECT packet.
pub const DISCONNECT: [u8; 2] = [DISCONNECT_TYPE << 4, 0];

pub(super) const CONNECT_TYPE: u8 = 1;
pub(super) const CONNACK_TYPE: u8 = 2;
pub(super) const PINGREQ_TYPE: u8 = 12;
pub(super) const PINGRESP_TYPE: u8 = 13;
pub(super) const DISCONNECT_TYPE: u8 = 14;
pub(super) const AUTH_TYPE: u8 = 15;

/// CONNECT flag bits (MQTT 3.1.1 §3.1.2.3).
pub(super) const FLAG_USERNAME: u8 = 0x80;
pub(super) const FLAG_PASSWORD: u8 = 0x40;
pub(super) const FLAG_WILL_RETAIN: u8 = 0x20;
pub(super) const FLAG_WILL_QOS: u8 = 0x18;
pub(super) const FLAG_WILL: u8 = 0x04;
pub(super) const FLAG_CLEAN_SESSION: u8 = 0x02;
pub(super) const FLAG_RESERVED: u8 = 0x01;

/// The fields of a CONNECT packet that sockcap sends. No will message: a load
/// test has no use for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// `None`: MQTT 3.1.1 (protocol level 4); `Some`: MQTT 5 (level 5) with these
    /// CONNECT properties.
    pub v5: Option<&'a ConnectProperties>,
    /// Client identifier, at most [`MAX_FIELD_LEN`] bytes.
    pub client_id: &'a str,
    /// Keep-alive interval in seconds; 0 disables keep-alive.
    pub keep_alive_s: u16,
    /// Ask the broker to discard any previous session state.
    pub clean_session: bool,
    /// User name, at most [`MAX_FIELD_LEN`] bytes.
    pub username: Option<&'a str>,
    /// Password, at most [`MAX_FIELD_LEN`] bytes. MQTT 3.1.1 allows a password
    /// only with a user name; it is encoded as given, so a scenario can provoke
    /// the broker's rejection on purpose.
    pub password: Option<&'a [u8]>,
}

/// A complete MQTT 5 CONNACK packet without properties.
pub const fn connack_v5(session_present: bool, reason: u8) -> [u8; 5] {
    [CONNACK_TYPE << 4, 3, session_present as u8, reason, 0]
}

/// A complete MQTT 5 DISCONNECT packet with a reason code and no properties.
pub const fn disconnect_v5(reason: u8) -> [u8; 3] {
    [DISCONNECT_TYPE << 4, 1, reason]
}

/// A complete CONNACK packet.
pub const fn connack(session_present: bool, code: u8) -> [u8; 4] {
    [CONNACK_TYPE << 4, 2, session_present as u8, code]
}

/// What a CONNACK return code means (MQTT 3.1.1 §3.2.2.3).
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        0 => "connection accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "reserved return code",
    }
}

/// A decoded packet. Only what sockcap acts on is decoded; every other packet
/// type is skipped whole as [`Packet::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// A client's CONNECT. For a protocol other than MQTT 3.1.1 (level 4) and
    /// MQTT 5 (level 5) only the fields up to keep-alive are read, since the layout
    /// after them may differ: `client_id` is then empty, and a server should answer
    /// with return code 1.
    Connect {
        client_id: String,
        keep_alive_s: u16,
        protocol_level: u8,
    },
    /// A server's CONNACK. Its layout tells the version: MQTT 3.1.1's has a body of
    /// exactly 2 bytes, MQTT 5's at least 3 (its properties' length), and the codes
    /// do not overlap (3.1.1 refuses with 1 to 5, MQTT 5 with 0x80 and up).
    ConnAck {
        session_present: bool,
        code: u8,
        /// MQTT 5's CONNACK properties (`None` for 3.1.1).
        properties: Option<ConnAckProperties>,
    },
    PingReq,
    PingResp,
    /// DISCONNECT; `reason` is MQTT 5's reason code (0, normal disconnection, when the
    /// packet has none, as every 3.1.1 DISCONNECT).
    Disconnect {
        reason: u8,
    },
    /// MQTT 5's AUTH (type 15, reserved in 3.1.1) with its reason code.
    Auth {
        reason: u8,
    },
    /// Any other valid packet type (PUBLISH, SUBSCRIBE, ...), skipped.
    Other {
        packet_type: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_connack_codes() {
        assert_eq!(connack_reason(0), "connection accepted");
        assert_eq!(connack_reason(1), "unacceptable protocol version");
        assert_eq!(connack_reason(5), "not authorized");
        assert_eq!(connack_reason(6), "reserved return code");
    }
}
