//! The MQTT 3.1.1 and 5 decoder: the first packet of a borrowed slice, or how many
//! bytes more it needs, or why the input is not MQTT. One decoder for both versions:
//! a CONNECT names its level, and the packets a server sends tell theirs by their
//! layout (see [`Packet::ConnAck`]).

use thiserror::Error;

use super::packet::{
    Packet, AUTH_TYPE, CONNACK_TYPE, CONNECT_TYPE, DISCONNECT_TYPE, FLAG_PASSWORD, FLAG_RESERVED, FLAG_USERNAME,
    FLAG_WILL, FLAG_WILL_QOS, FLAG_WILL_RETAIN, MAX_PACKET_LEN, PINGREQ_TYPE, PINGRESP_TYPE, PROTOCOL_LEVEL,
    PROTOCOL_LEVEL_5,
};
use super::v5::{
    shape, ConnAckProperties, Shape, ASSIGNED_CLIENT_ID, MAXIMUM_PACKET_SIZE, RECEIVE_MAXIMUM, SERVER_KEEP_ALIVE,
};

/// Input that is not a valid MQTT 3.1.1 or 5 packet. The connection it came from
/// should be closed: the byte stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("remaining length is encoded in more than 4 bytes")]
    RemainingLengthTooLong,
    #[error("packet of {len} bytes exceeds sockcap's {max}-byte limit")]
    PacketTooLarge { len: usize, max: usize },
    #[error("packet type {0} is reserved")]
    ReservedPacketType(u8),
    #[error("packet type {packet_type} has invalid fixed-header flags {flags:#06b}")]
    InvalidFlags { packet_type: u8, flags: u8 },
    #[error("packet type {packet_type} must have a remaining length of {expected}, not {actual}")]
    InvalidLength { packet_type: u8, expected: usize, actual: usize },
    #[error("CONNECT names an unknown protocol (neither MQTT nor MQIsdp level 3)")]
    BadProtocolName,
    #[error("CONNECT has invalid flags {0:#010b}")]
    InvalidConnectFlags(u8),
    #[error("CONNACK has reserved acknowledge flags set: {0:#010b}")]
    InvalidConnAckFlags(u8),
    #[error("{field} runs past the end of the packet")]
    LengthOverflow { field: &'static str },
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("packet has {0} unexpected bytes after its payload")]
    TrailingBytes(usize),
    #[error("property identifier {0:#04x} is not an MQTT 5 property")]
    UnknownProperty(u8),
}

/// Decodes the first packet in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a packet (read more and call
/// again with the longer buffer), or the packet and the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some((body_at, total)) = packet_bounds(buf)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(body_at..total) else {
        return Ok(None);
    };
    let packet = decode_body(buf[0] >> 4, buf[0] & 0x0F, body)?;
    Ok(Some((packet, total)))
}

/// Reads the fixed header that `buf` starts with: `Ok(None)` while `buf` ends inside
/// it, else where the packet's body starts and where the packet ends (its length),
/// whether or not the rest of the packet is in `buf` yet.
pub fn packet_bounds(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((remaining, len_bytes)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining;
    if total > MAX_PACKET_LEN {
        return Err(DecodeError::PacketTooLarge { len: total, max: MAX_PACKET_LEN });
    }
    Ok(Some((1 + len_bytes, total)))
}

/// Decodes the variable header and payload of a packet of `packet_type`.
fn decode_body(packet_type: u8, flags: u8, body: &[u8]) -> Result<Packet, DecodeError> {
    match packet_type {
        0 => Err(DecodeError::ReservedPacketType(packet_type)),
        CONNECT_TYPE => {
            expect_no_flags(packet_type, flags)?;
            decode_connect(body)
        }
        CONNACK_TYPE => {
            expect_no_flags(packet_type, flags)?;
            if body.len() < 2 {
                expect_length(packet_type, body, 2)?;
            }
            if body[0] & !1 != 0 {
                return Err(DecodeError::InvalidConnAckFlags(body[0]));
            }
            let (session_present, code) = (body[0] & 1 == 1, body[1]);
            if body.len() == 2 {
                return Ok(Packet::ConnAck { session_present, code, properties: None });
            }
            let mut r = Reader(&body[2..]);
            let properties = Some(read_connack_properties(&mut r)?);
            expect_end(&r)?;
            Ok(Packet::ConnAck { session_present, code, properties })
        }
        PINGREQ_TYPE | PINGRESP_TYPE => {
            expect_no_flags(packet_type, flags)?;
            expect_length(packet_type, body, 0)?;
            Ok(if packet_type == PINGREQ_TYPE { Packet::PingReq } else { Packet::PingResp })
        }
        DISCONNECT_TYPE | AUTH_TYPE => {
            expect_no_flags(packet_type, flags)?;
            // MQTT 5 (§3.14.2.1, §3.15.2.1): a reason code and properties, both
            // omitted when the reason is 0 and there are none (every 3.1.1 DISCONNECT).
            let mut r = Reader(body);
            let reason = if body.is_empty() { 0 } else { r.u8("reason code")? };
            if !r.0.is_empty() {
                skip_properties(&mut r)?;
                expect_end(&r)?;
            }
            Ok(if packet_type == DISCONNECT_TYPE { Packet::Disconnect { reason } } else { Packet::Auth { reason } })
        }
        _ => Ok(Packet::Other { packet_type }),
    }
}

/// Decodes a CONNECT's variable header and payload (MQTT 3.1.1 §3.1, MQTT 5 §3.1).
fn decode_connect(body: &[u8]) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let name = r.field("protocol name")?;
    let protocol_level = r.u8("protocol level")?;
    let flags = r.u8("connect flags")?;
    let keep_alive_s = r.u16("keep alive")?;
    match (name, protocol_level) {
        (b"MQTT", PROTOCOL_LEVEL | PROTOCOL_LEVEL_5) => {}
        (b"MQTT", _) | (b"MQIsdp", 3) => {
            return Ok(Packet::Connect { client_id: String::new(), keep_alive_s, protocol_level })
        }
        _ => return Err(DecodeError::BadProtocolName),
    }
    let v5 = protocol_level == PROTOCOL_LEVEL_5;
    check_connect_flags(flags, v5)?;
    if v5 {
        skip_properties(&mut r)?;
    }
    let client_id = r.str("client identifier")?.to_owned();
    if flags & FLAG_WILL != 0 {
        if v5 {
            skip_properties(&mut r)?;
        }
        r.str("will topic")?;
        r.field("will message")?;
    }
    if flags & FLAG_USERNAME != 0 {
        r.str("user name")?;
    }
    if flags & FLAG_PASSWORD != 0 {
        r.field("password")?;
    }
    expect_end(&r)?;
    Ok(Packet::Connect { client_id, keep_alive_s, protocol_level })
}

fn expect_end(r: &Reader) -> Result<(), DecodeError> {
    if r.0.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes(r.0.len()))
    }
}

/// Rejects the flag combinations MQTT 3.1.1 forbids: the reserved bit, will
/// QoS 3, will QoS or retain without a will, a password without a user name (which
/// MQTT 5 allows, §3.1.2.9).
fn check_connect_flags(flags: u8, v5: bool) -> Result<(), DecodeError> {
    let will_qos = (flags & FLAG_WILL_QOS) >> 3;
    let invalid = flags & FLAG_RESERVED != 0
        || will_qos == 3
        || (flags & FLAG_WILL == 0 && flags & (FLAG_WILL_QOS | FLAG_WILL_RETAIN) != 0)
        || (!v5 && flags & FLAG_USERNAME == 0 && flags & FLAG_PASSWORD != 0);
    if invalid {
        Err(DecodeError::InvalidConnectFlags(flags))
    } else {
        Ok(())
    }
}

fn expect_no_flags(packet_type: u8, flags: u8) -> Result<(), DecodeError> {
    if flags == 0 {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags { packet_type, flags })
    }
}

fn expect_length(packet_type: u8, body: &[u8], expected: usize) -> Result<(), DecodeError> {
    if body.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::InvalidLength { packet_type, expected, actual: body.len() })
    }
}

/// Reads the variable-length "remaining length" (MQTT 3.1.1 §2.2.3) from the
/// start of `buf`: `Ok(None)` if `buf` ends inside it, else the value and the
/// number of bytes it took.
pub(super) fn decode_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::RemainingLengthTooLong)
    } else {
        Ok(None)
    }
}

/// A cursor over a packet body whose reads fail with
/// [`DecodeError::LengthOverflow`] instead of running past the end.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::LengthOverflow { field });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A field with a 2-byte big-endian length prefix.
    pub(super) fn field(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    pub(super) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.field(field)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }
}

/// A property value as read: numbers widened to u32, strings and binaries borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Number(u32),
    Bytes(&'a [u8]),
    Pair,
}

/// Reads a property list (its variable-length byte count, then the properties) from
/// `r`, calling `each` with every property's identifier and value.
fn read_properties<'a>(
    r: &mut Reader<'a>,
    mut each: impl FnMut(u8, Value<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let Some((len, used)) = decode_remaining_length(r.0)? else {
        return Err(DecodeError::LengthOverflow { field: "property length" });
    };
    r.take(used, "property length")?;
    let mut list = Reader(r.take(len, "properties")?);
    while !list.0.is_empty() {
        // Every identifier fits in one byte; a longer one is no property.
        let id = list.u8("property identifier")?;
        let value = match shape(id).ok_or(DecodeError::UnknownProperty(id))? {
            Shape::Byte => Value::Number(u32::from(list.u8("property")?)),
            Shape::U16 => Value::Number(u32::from(list.u16("property")?)),
            Shape::U32 => {
                let b = list.take(4, "property")?;
                Value::Number(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            Shape::VarInt => match decode_remaining_length(list.0)? {
                Some((n, used)) => {
                    list.take(used, "property")?;
                    Value::Number(n as u32)
                }
                None => return Err(DecodeError::LengthOverflow { field: "property" }),
            },
            Shape::Utf8 => Value::Bytes(list.str("property")?.as_bytes()),
            Shape::Binary => Value::Bytes(list.field("property")?),
            Shape::Pair => {
                list.str("user property name")?;
                list.str("user property value")?;
                Value::Pair
            }
        };
        each(id, value)?;
    }
    Ok(())
}

/// Reads and checks a property list, keeping nothing of it.
fn skip_properties(r: &mut Reader) -> Result<(), DecodeError> {
    read_properties(r, |_, _| Ok(()))
}

/// Reads a CONNACK's property list.
fn read_connack_properties(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    read_properties(r, |id, value| {
        match (id, value) {
            (SERVER_KEEP_ALIVE, Value::Number(n)) => p.server_keep_alive_s = Some(n as u16),
            (RECEIVE_MAXIMUM, Value::Number(n)) => p.receive_maximum = Some(n as u16),
            (MAXIMUM_PACKET_SIZE, Value::Number(n)) => p.maximum_packet_size = Some(n),
            (ASSIGNED_CLIENT_ID, Value::Bytes(b)) => {
                // Checked as UTF-8 by the reader.
                p.assigned_client_id = Some(String::from_utf8_lossy(b).into_owned());
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::encode::encode_remaining_length;
    use super::super::encode::tests::{connect, encoded};
    use super::super::packet::{connack, Connect, DISCONNECT, PINGREQ, PINGRESP};
    use super::*;

    fn decode_all(buf: &[u8]) -> (Packet, usize) {
        decode(buf).expect("valid packet").expect("complete packet")
    }

    #[test]
    fn decodes_fixed_packets() {
        assert_eq!(decode_all(&PINGREQ), (Packet::PingReq, 2));
        assert_eq!(decode_all(&PINGRESP), (Packet::PingResp, 2));
        assert_eq!(decode_all(&DISCONNECT), (Packet::Disconnect { reason: 0 }, 2));
        let connack = Packet::ConnAck { session_present: true, code: 4, properties: None };
        assert_eq!(decode_all(&[0x20, 0x02, 0x01, 0x04]), (connack, 4));
    }

    /// The variable header of the specification's non-normative example
    /// (§3.1.2.10, figure 3.6): flags 0xCE (user name, password, will QoS 1,
    /// will, clean session) and keep-alive 10, with a matching payload.
    #[test]
    fn decodes_the_spec_connect_example() {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xCE, 0x00, 0x0A];
        for field in [&b"client"[..], b"will/topic", b"bye", b"user", b"secret"] {
            body.extend_from_slice(&(field.len() as u16).to_be_bytes());
            body.extend_from_slice(field);
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        let expected = Packet::Connect { client_id: "client".into(), keep_alive_s: 10, protocol_level: 4 };
        assert_eq!(decode_all(&packet), (expected, packet.len()));
    }

    #[test]
    fn connect_round_trips() {
        let c = Connect { username: Some("user"), password: Some(b"\x00\xffbinary"), ..connect("sockcap-7-42") };
        let bytes = encoded(&c);
        let expected = Packet::Connect { client_id: "sockcap-7-42".into(), keep_alive_s: 30, protocol_level: 4 };
        assert_eq!(decode_all(&bytes), (expected, bytes.len()));
    }

    #[test]
    fn connect_of_other_protocol_levels_reports_the_level() {
        // MQTT 5: properties follow keep-alive, so only the level is reported.
        let v5 = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 0];
        let (packet, _) = decode_all(&v5);
        assert_eq!(packet, Packet::Connect { client_id: String::new(), keep_alive_s: 60, protocol_level: 5 });
        let v31 = [0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60];
        assert!(matches!(decode_all(&v31).0, Packet::Connect { protocol_level: 3, .. }));
    }

    /// Remaining-length boundaries from the specification (§2.2.3, table 2.4).
    #[test]
    fn remaining_length_matches_the_spec_table() {
        let table: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in table {
            let mut out = Vec::new();
            encode_remaining_length(value, &mut out);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(decode_remaining_length(bytes), Ok(Some((value, bytes.len()))), "decoding {value}");
        }
    }

    #[test]
    fn every_prefix_of_a_packet_needs_more_bytes() {
        let c = Connect { username: Some("user"), password: Some(b"pw"), ..connect("a-client-id-long-enough") };
        let mut stream = encoded(&c);
        stream.extend_from_slice(&PINGREQ);
        stream.extend_from_slice(&connack(false, 0));
        stream.extend_from_slice(&DISCONNECT);
        let mut at = 0;
        let mut packets = Vec::new();
        while at < stream.len() {
            let rest = &stream[at..];
            let (packet, used) = decode_all(rest);
            for cut in 0..used {
                assert_eq!(decode(&rest[..cut]), Ok(None), "prefix of {cut} bytes");
            }
            packets.push(packet);
            at += used;
        }
        assert_eq!(packets.len(), 4);
        assert_eq!(packets[1], Packet::PingReq);
        assert_eq!(packets[3], Packet::Disconnect { reason: 0 });
    }

    #[test]
    fn skips_other_packet_types_whole() {
        // PUBLISH QoS 0, topic "a", payload "hi".
        let publish = [0x30, 5, 0, 1, b'a', b'h', b'i'];
        assert_eq!(decode_all(&publish), (Packet::Other { packet_type: 3 }, 7));
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: [(&[u8], DecodeError); 11] = [
            (&[0xC0, 0x80, 0x80, 0x80, 0x80, 0x01], DecodeError::RemainingLengthTooLong),
            (&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], DecodeError::PacketTooLarge { len: 268_435_460, max: MAX_PACKET_LEN }),
            (&[0x00, 0x00], DecodeError::ReservedPacketType(0)),
            (&[0xF1, 0x00], DecodeError::InvalidFlags { packet_type: 15, flags: 1 }),
            (&[0xC1, 0x00], DecodeError::InvalidFlags { packet_type: 12, flags: 1 }),
            (&[0xD0, 0x01, 0x00], DecodeError::InvalidLength { packet_type: 13, expected: 0, actual: 1 }),
            (&[0x10, 10, 0, 4, b'M', b'Q', b'T', b'X', 4, 2, 0, 0], DecodeError::BadProtocolName),
            (&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 0, 0, 0], DecodeError::InvalidConnectFlags(0x03)),
            (
                &[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 5],
                DecodeError::LengthOverflow { field: "client identifier" },
            ),
            (
                &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, 0xFF],
                DecodeError::InvalidUtf8 { field: "client identifier" },
            ),
            (&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 0, 9], DecodeError::TrailingBytes(1)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes), Err(expected), "decoding {bytes:02x?}");
        }
    }

    #[test]
    fn rejects_an_oversized_packet_before_it_arrives() {
        // 64 KiB of remaining length: the header alone is enough to refuse it.
        assert!(matches!(decode(&[0x30, 0x80, 0x80, 0x04]), Err(DecodeError::PacketTooLarge { .. })));
    }
}
