//! MQTT 3.1.1 and 5 encoders: the CONNECT the client engine sends, the CONNACK the
//! embedded target sends, and the field and remaining-length encodings they use.

use super::packet::{
    connack, Connect, CONNACK_TYPE, CONNECT_HEADER, FLAG_CLEAN_SESSION, FLAG_PASSWORD, FLAG_USERNAME, MAX_FIELD_LEN,
    PROTOCOL_LEVEL, PROTOCOL_LEVEL_5,
};
use super::v5::{
    ConnectProperties, ASSIGNED_CLIENT_ID, MAXIMUM_PACKET_SIZE, RECEIVE_MAXIMUM, SESSION_EXPIRY, USER_PROPERTY,
};

const CONNACK_HEADER: u8 = CONNACK_TYPE << 4;

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
    // Protocol name (6), level (1), flags (1), keep-alive (2), MQTT 5's properties,
    // then the payload.
    let properties = c.v5.map_or(0, encoded_len);
    let remaining =
        10 + properties + 2 + c.client_id.len() + field_len(c.username.map(str::as_bytes)) + field_len(c.password);

    out.reserve(1 + 4 + remaining);
    out.push(CONNECT_HEADER);
    encode_remaining_length(remaining, out);
    let level = if c.v5.is_some() { PROTOCOL_LEVEL_5 } else { PROTOCOL_LEVEL };
    out.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', level, flags]);
    out.extend_from_slice(&c.keep_alive_s.to_be_bytes());
    if let Some(p) = c.v5 {
        encode_connect_properties(p, out);
    }
    put_field(c.client_id.as_bytes(), out);
    if let Some(username) = c.username {
        put_field(username.as_bytes(), out);
    }
    if let Some(password) = c.password {
        put_field(password, out);
    }
}

/// Appends a CONNACK packet to `out`; `code` 0 accepts the connection, the
/// others are listed by [`connack_reason`](super::connack_reason).
pub fn encode_connack(session_present: bool, code: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&connack(session_present, code));
}

/// Appends an MQTT 5 CONNACK accepting a client that sent an empty client id, with the
/// id assigned to it (Assigned Client Identifier) as its one property.
///
/// # Panics
/// If `id` is longer than [`MAX_FIELD_LEN`] bytes.
pub fn encode_connack_v5_assigned(id: &str, out: &mut Vec<u8>) {
    let properties = 1 + 2 + id.len();
    let remaining = 2 + var_int_len(properties) + properties;
    out.push(CONNACK_HEADER);
    encode_remaining_length(remaining, out);
    out.extend_from_slice(&[0, 0]);
    encode_remaining_length(properties, out);
    out.push(ASSIGNED_CLIENT_ID);
    put_field(id.as_bytes(), out);
}

/// Appends `len` as a variable-length "remaining length"; `len` must be below
/// 2^28, which every packet sockcap encodes is by far.
pub(super) fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
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

/// The encoded length of `p`'s properties (without the length prefix).
fn properties_len(p: &ConnectProperties) -> usize {
    let pairs: usize = p.user_properties.iter().map(|(k, v)| 1 + 2 + k.len() + 2 + v.len()).sum();
    p.session_expiry_s.map_or(0, |_| 5)
        + p.receive_maximum.map_or(0, |_| 3)
        + p.maximum_packet_size.map_or(0, |_| 5)
        + pairs
}

/// The encoded length of `p`'s property list, its length prefix included.
fn encoded_len(p: &ConnectProperties) -> usize {
    let len = properties_len(p);
    len + var_int_len(len)
}

/// The bytes `n` takes as a variable byte integer (a remaining or property length).
fn var_int_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `p` as a property list, length prefix first.
///
/// # Panics
/// If a user property's name or value is longer than an MQTT string; the plan checks them.
fn encode_connect_properties(p: &ConnectProperties, out: &mut Vec<u8>) {
    encode_remaining_length(properties_len(p), out);
    if let Some(s) = p.session_expiry_s {
        out.push(SESSION_EXPIRY);
        out.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(n) = p.receive_maximum {
        out.push(RECEIVE_MAXIMUM);
        out.extend_from_slice(&n.to_be_bytes());
    }
    if let Some(n) = p.maximum_packet_size {
        out.push(MAXIMUM_PACKET_SIZE);
        out.extend_from_slice(&n.to_be_bytes());
    }
    for (k, v) in &p.user_properties {
        out.push(USER_PROPERTY);
        put_field(k.as_bytes(), out);
        put_field(v.as_bytes(), out);
    }
}

/// Also the CONNECT samples (`connect`, `encoded`) of the decoder's tests.
#[cfg(test)]
pub(super) mod tests {
    use super::super::packet::{DISCONNECT, PINGREQ, PINGRESP};
    use super::*;

    pub(in crate::protocol::mqtt) fn connect(client_id: &str) -> Connect<'_> {
        Connect { v5: None, client_id, keep_alive_s: 30, clean_session: true, username: None, password: None }
    }

    pub(in crate::protocol::mqtt) fn encoded(c: &Connect) -> Vec<u8> {
        let mut out = Vec::new();
        encode_connect(c, &mut out);
        out
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
    #[should_panic(expected = "exceeds the 65535-byte limit")]
    fn refuses_to_encode_an_overlong_field() {
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        encode_connect(&connect(&long), &mut Vec::new());
    }
}
