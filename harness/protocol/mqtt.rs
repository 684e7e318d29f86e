//! MQTT 3.1.1 packet codec: encoders for what the client engine and the
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
//! reads. It is small enough to review and is fuzzed by the property test below.
//!
//! The decoder is strict where the specification says a receiver must close the
//! connection (fixed-header flags, reserved CONNECT flag bits, field lengths
//! running past the packet) and caps packets at [`MAX_PACKET_LEN`]: a load tool
//! never needs large packets, and the cap bounds what a peer can make us buffer.

use thiserror::Error;

/// Largest packet, fixed header included, that [`decode`] accepts.
pub const MAX_PACKET_LEN: usize = 64 * 1024;

/// Longest string or binary field MQTT can encode (2-byte length prefix).
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// The protocol level of MQTT 3.1.1.
pub const PROTOCOL_LEVEL: u8 = 4;

/// The first byte of every CONNECT packet (type 1, no flags).
pub const CONNECT_HEADER: u8 = CONNECT_TYPE << 4;

/// A complete PINGREQ packet.
pub const PINGREQ: [u8; 2] = [PINGREQ_TYPE << 4, 0];
/// A complete PINGRESP packet.
pub const PINGRESP: [u8; 2] = [PINGRESP_TYPE << 4, 0];
/// A complete DISCONNECT packet.
pub const DISCONNECT: [u8; 2] = [DISCONNECT_TYPE << 4, 0];

const CONNECT_TYPE: u8 = 1;
const CONNACK_TYPE: u8 = 2;
const PINGREQ_TYPE: u8 = 12;
const PINGRESP_TYPE: u8 = 13;
const DISCONNECT_TYPE: u8 = 14;

/// CONNECT flag bits (MQTT 3.1.1 §3.1.2.3).
const FLAG_USERNAME: u8 = 0x80;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_WILL_QOS: u8 = 0x18;
const FLAG_WILL: u8 = 0x04;
const FLAG_CLEAN_SESSION: u8 = 0x02;
const FLAG_RESERVED: u8 = 0x01;

/// The fields of a CONNECT packet that sockcap sends. No will message: a load
/// test has no use for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
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

/// Appends a CONNECT packet to `out`.
///
/// # Panics
/// If a field is longer than [`MAX_FIELD_LEN`] bytes; the plan validates client
/// ids and credentials before they get here.
pub fn encode_connect(c: &Connect, out: &mut Vec<u8>) {
    let mut flags = 0;
    if c.clean_session {
        flags |= FLAG_CLEAN_SESSION;
    }
    if c.username.is_some() {
        flags |= FLAG_USERNAME;
    }
    if c.password.is_some() {
        flags |= FLAG_PASSWORD;
    }
    let field_len = |f: Option<&[u8]>| f.map_or(0, |f| 2 + f.len());
    // Protocol name (6), level (1), flags (1), keep-alive (2), then the payload.
    let remaining = 10 + 2 + c.client_id.len() + field_len(c.username.map(str::as_bytes)) + field_len(c.password);

    out.reserve(1 + 4 + remaining);
    out.push(CONNECT_HEADER);
    encode_remaining_length(remaining, out);
    out.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', PROTOCOL_LEVEL, flags]);
    out.extend_from_slice(&c.keep_alive_s.to_be_bytes());
    put_field(c.client_id.as_bytes(), out);
    if let Some(username) = c.username {
        put_field(username.as_bytes(), out);
    }
    if let Some(password) = c.password {
        put_field(password, out);
    }
}

/// A complete CONNACK packet.
pub const fn connack(session_present: bool, code: u8) -> [u8; 4] {
    [CONNACK_TYPE << 4, 2, session_present as u8, code]
}

/// Appends a CONNACK packet to `out`; `code` 0 accepts the connection, the
/// others are listed by [`connack_reason`].
pub fn encode_connack(session_present: bool, code: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&connack(session_present, code));
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
    /// A client's CONNECT. For a protocol other than MQTT 3.1.1 (level 4) only
    /// the fields up to keep-alive are read, since the layout after them differs
    /// (MQTT 5 adds properties): `client_id` is then empty, and a server should
    /// answer with return code 1.
    Connect {
        client_id: String,
        keep_alive_s: u16,
        protocol_level: u8,
    },
    /// A server's CONNACK.
    ConnAck {
        session_present: bool,
        code: u8,
    },
    PingReq,
    PingResp,
    Disconnect,
    /// Any other valid packet type (PUBLISH, SUBSCRIBE, ...), skipped.
    Other {
        packet_type: u8,
    },
}

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
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining;
    if total > MAX_PACKET_LEN {
        return Err(DecodeError::PacketTooLarge { len: total, max: MAX_PACKET_LEN });
    }
    let Some(body) = buf.get(1 + len_bytes..total) else {
        return Ok(None);
    };
    let packet = decode_body(first >> 4, first & 0x0F, body)?;
    Ok(Some((packet, total)))
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
fn decode_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
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

/// Appends `len` as a variable-length "remaining length"; `len` must be below
/// 2^28, which every packet sockcap encodes is by far.
fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    debug_assert!(len < 1 << 28, "remaining length {len} does not fit in 4 bytes");
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a length-prefixed string or binary field.
fn put_field(field: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(field.len())
        .unwrap_or_else(|_| panic!("MQTT field of {} bytes exceeds the {MAX_FIELD_LEN}-byte limit", field.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
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
    use super::*;

    fn connect(client_id: &str) -> Connect<'_> {
        Connect { client_id, keep_alive_s: 30, clean_session: true, username: None, password: None }
    }

    fn encoded(c: &Connect) -> Vec<u8> {
        let mut out = Vec::new();
        encode_connect(c, &mut out);
        out
    }

    fn decode_all(buf: &[u8]) -> (Packet, usize) {
        decode(buf).expect("valid packet").expect("complete packet")
    }

    #[test]
    fn encodes_connect_golden_bytes() {
        let mut expected = vec![0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 9];
        expected.extend_from_slice(b"sockcap-0");
        assert_eq!(encoded(&connect("sockcap-0")), expected);
    }

    #[test]
    fn encodes_connect_with_credentials_golden_bytes() {
        let c = Connect {
            username: Some("u"),
            password: Some(b"pw"),
            keep_alive_s: 10,
            clean_session: false,
            ..connect("c")
        };
        let expected = [
            0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC0, 0, 10, // header
            0, 1, b'c', 0, 1, b'u', 0, 2, b'p', b'w', // payload
        ];
        assert_eq!(encoded(&c), expected);
    }

    #[test]
    fn fixed_packets_match_the_spec() {
        assert_eq!(PINGREQ, [0xC0, 0x00]);
        assert_eq!(PINGRESP, [0xD0, 0x00]);
        assert_eq!(DISCONNECT, [0xE0, 0x00]);
        let mut out = Vec::new();
        encode_connack(true, 5, &mut out);
        assert_eq!(out, [0x20, 0x02, 0x01, 0x05]);
        assert_eq!(connack(false, 0), [0x20, 0x02, 0x00, 0x00]);
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

    #[test]
    fn names_connack_codes() {
        assert_eq!(connack_reason(0), "connection accepted");
        assert_eq!(connack_reason(1), "unacceptable protocol version");
        assert_eq!(connack_reason(5), "not authorized");
        assert_eq!(connack_reason(6), "reserved return code");
    }

    #[test]
    #[should_panic(expected = "exceeds the 65535-byte limit")]
    fn refuses_to_encode_an_overlong_field() {
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        encode_connect(&connect(&long), &mut Vec::new());
    }

    /// xorshift64: a deterministic pseudo-random source without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Checks the decoder's contract on arbitrary input: no panic, a consumed
    /// count within the buffer, and the same answer from the exact packet.
    fn check_decode_contract(buf: &[u8]) {
        if let Ok(Some((packet, used))) = decode(buf) {
            assert!((2..=buf.len()).contains(&used), "{buf:02x?} used {used}");
            assert_eq!(decode(&buf[..used]), Ok(Some((packet, used))));
        }
    }

    #[test]
    fn decode_never_panics_on_random_bytes() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200_000 {
            let len = rng.below(40);
            let buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_decode_contract(&buf);
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_packets() {
        let c = Connect { username: Some("user"), password: Some(b"pw"), ..connect("client") };
        let seeds = [encoded(&c), connack(true, 0).to_vec(), PINGREQ.to_vec()];
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for _ in 0..200_000 {
            let mut buf = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(buf.len());
                buf[at] = rng.next() as u8;
            }
            buf.truncate(rng.below(buf.len() + 1));
            check_decode_contract(&buf);
        }
    }
}
