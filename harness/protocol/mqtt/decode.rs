//! The MQTT 3.1.1 decoder: the first packet of a borrowed slice, or how many
//! bytes more it needs, or why the input is not MQTT.

use thiserror::Error;

use super::packet::{
    Packet, CONNACK_TYPE, CONNECT_TYPE, DISCONNECT_TYPE, FLAG_PASSWORD, FLAG_RESERVED, FLAG_USERNAME, FLAG_WILL,
    FLAG_WILL_QOS, FLAG_WILL_RETAIN, MAX_PACKET_LEN, PINGREQ_TYPE, PINGRESP_TYPE, PROTOCOL_LEVEL,
};

/// Input that is not a valid MQTT 3.1.1 packet. The connection it came from
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
    #[error("CONNECT has {0} unexpected bytes after its payload")]
    TrailingBytes(usize),
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
        0 | 15 => Err(DecodeError::ReservedPacketType(packet_type)),
        CONNECT_TYPE => {
            expect_no_flags(packet_type, flags)?;
            decode_connect(body)
        }
        CONNACK_TYPE => {
            expect_no_flags(packet_type, flags)?;
            expect_length(packet_type, body, 2)?;
            if body[0] & !1 != 0 {
                return Err(DecodeError::InvalidConnAckFlags(body[0]));
            }
            Ok(Packet::ConnAck { session_present: body[0] & 1 == 1, code: body[1] })
        }
        PINGREQ_TYPE | PINGRESP_TYPE | DISCONNECT_TYPE => {
            expect_no_flags(packet_type, flags)?;
            expect_length(packet_type, body, 0)?;
            Ok(match packet_type {
                PINGREQ_TYPE => Packet::PingReq,
                PINGRESP_TYPE => Packet::PingResp,
                _ => Packet::Disconnect,
            })
        }
        _ => Ok(Packet::Other { packet_type }),
    }
}

/// Decodes a CONNECT's variable header and payload (MQTT 3.1.1 §3.1).
fn decode_connect(body: &[u8]) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let name = r.field("protocol name")?;
    let protocol_level = r.u8("protocol level")?;
    let flags = r.u8("connect flags")?;
    let keep_alive_s = r.u16("keep alive")?;
    match (name, protocol_level) {
        (b"MQTT", PROTOCOL_LEVEL) => {}
        (b"MQTT", _) | (b"MQIsdp", 3) => {
            return Ok(Packet::Connect { client_id: String::new(), keep_alive_s, protocol_level })
        }
        _ => return Err(DecodeError::BadProtocolName),
    }
    check_connect_flags(flags)?;
    let client_id = r.str("client identifier")?.to_owned();
    if flags & FLAG_WILL != 0 {
        r.str("will topic")?;
        r.field("will message")?;
    }
    if flags & FLAG_USERNAME != 0 {
        r.str("user name")?;
    }
    if flags & FLAG_PASSWORD != 0 {
        r.field("password")?;
    }
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes(r.0.len()));
    }
    Ok(Packet::Connect { client_id, keep_alive_s, protocol_level })
}

/// Rejects the flag combinations MQTT 3.1.1 forbids: the reserved bit, will
/// QoS 3, will QoS or retain without a will, a password without a user name.
fn check_connect_flags(flags: u8) -> Result<(), DecodeError> {
    let will_qos = (flags & FLAG_WILL_QOS) >> 3;
    let invalid = flags & FLAG_RESERVED != 0
        || will_qos == 3
        || (flags & FLAG_WILL == 0 && flags & (FLAG_WILL_QOS | FLAG_WILL_RETAIN) != 0)
        || (flags & FLAG_USERNAME == 0 && flags & FLAG_PASSWORD != 0);
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
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::LengthOverflow { field });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A field with a 2-byte big-endian length prefix.
    fn field(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.field(field)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }
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
        assert_eq!(decode_all(&DISCONNECT), (Packet::Disconnect, 2));
        assert_eq!(decode_all(&[0x20, 0x02, 0x01, 0x04]), (Packet::ConnAck { session_present: true, code: 4 }, 4));
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
        assert_eq!(packets[3], Packet::Disconnect);
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
            (&[0xF0, 0x00], DecodeError::ReservedPacketType(15)),
            (&[0xC1, 0x00], DecodeError::InvalidFlags { packet_type: 12, flags: 1 }),
            (&[0xE0, 0x01, 0x00], DecodeError::InvalidLength { packet_type: 14, expected: 0, actual: 1 }),
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
