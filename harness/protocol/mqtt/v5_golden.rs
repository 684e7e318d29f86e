//! Golden bytes of MQTT 5 packets (CONNECT with properties, CONNACK with a reason
//! code and properties, DISCONNECT and AUTH with reasons), and malformed MQTT 5
//! input decoded to errors, not panics.

use super::encode::tests::{connect, encoded};
use super::{connack_v5, decode, disconnect_v5, ConnAckProperties, Connect, ConnectProperties, DecodeError, Packet};

fn properties() -> ConnectProperties {
    ConnectProperties {
        session_expiry_s: Some(0),
        receive_maximum: Some(10),
        maximum_packet_size: Some(1024),
        user_properties: vec![("k".into(), "v".into())],
    }
}

#[test]
fn encodes_a_v5_connect_with_properties_golden_bytes() {
    let p = properties();
    let c = Connect { v5: Some(&p), keep_alive_s: 60, ..connect("c") };
    #[rustfmt::skip]
    let expected = [
        0x10, 34, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, // header, level 5
        20, // property length
        0x11, 0, 0, 0, 0, // session expiry 0
        0x21, 0, 10, // receive maximum 10
        0x27, 0, 0, 4, 0, // maximum packet size 1024
        0x26, 0, 1, b'k', 0, 1, b'v', // user property k = v
        0, 1, b'c', // client id
    ];
    assert_eq!(encoded(&c), expected);
    let packet = Packet::Connect { client_id: "c".into(), keep_alive_s: 60, protocol_level: 5 };
    assert_eq!(decode(&expected), Ok(Some((packet, expected.len()))));
}

#[test]
fn a_v5_connect_may_have_a_password_without_a_user_name() {
    let p = ConnectProperties::default();
    let c = Connect { v5: Some(&p), password: Some(b"pw"), ..connect("c") };
    let bytes = encoded(&c);
    assert_eq!(bytes[9], 0x42, "password and clean start flags");
    let packet = Packet::Connect { client_id: "c".into(), keep_alive_s: 30, protocol_level: 5 };
    assert_eq!(decode(&bytes), Ok(Some((packet, bytes.len()))));
    let v3 = Connect { v5: None, ..c };
    assert_eq!(decode(&encoded(&v3)), Err(DecodeError::InvalidConnectFlags(0x42)));
}

#[test]
fn a_v5_connect_without_properties_has_a_zero_property_length() {
    let p = ConnectProperties::default();
    let c = Connect { v5: Some(&p), ..connect("c") };
    assert_eq!(encoded(&c), [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0, 1, b'c']);
}

#[test]
fn decodes_a_v5_connack_with_reason_code_and_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 19, 0x00, 0x97, // no session, quota exceeded
        16, // property length
        0x13, 0, 5, // server keep alive 5
        0x12, 0, 2, b'i', b'd', // assigned client identifier
        0x21, 0, 20, // receive maximum 20
        0x24, 1, // maximum QoS 1 (read, not kept)
        0x1F, 0, 0, // reason string, empty
    ];
    let properties = ConnAckProperties {
        server_keep_alive_s: Some(5),
        assigned_client_id: Some("id".into()),
        receive_maximum: Some(20),
        maximum_packet_size: None,
    };
    let packet = Packet::ConnAck { session_present: false, code: 0x97, properties: Some(properties) };
    assert_eq!(decode(&bytes), Ok(Some((packet, bytes.len()))));
    assert_eq!(
        decode(&connack_v5(true, 0)),
        Ok(Some((Packet::ConnAck { session_present: true, code: 0, properties: Some(Default::default()) }, 5)))
    );
}

#[test]
fn decodes_disconnect_and_auth_with_reasons() {
    assert_eq!(disconnect_v5(0x8E), [0xE0, 1, 0x8E]);
    assert_eq!(decode(&disconnect_v5(0x8E)), Ok(Some((Packet::Disconnect { reason: 0x8E }, 3))));
    // Reason 0x8B with a reason string property "bye".
    let with_properties = [0xE0, 8, 0x8B, 6, 0x1F, 0, 3, b'b', b'y', b'e'];
    assert_eq!(decode(&with_properties), Ok(Some((Packet::Disconnect { reason: 0x8B }, 10))));
    assert_eq!(decode(&[0xF0, 2, 0x18, 0]), Ok(Some((Packet::Auth { reason: 0x18 }, 4))));
}

#[test]
fn malformed_v5_packets_are_errors() {
    let cases: [(&[u8], DecodeError); 6] = [
        // A property list longer than the packet.
        (&[0x20, 3, 0, 0, 5], DecodeError::LengthOverflow { field: "properties" }),
        // An unknown property identifier.
        (&[0x20, 5, 0, 0, 2, 0x7F, 0], DecodeError::UnknownProperty(0x7F)),
        // A u16 property cut short.
        (&[0x20, 5, 0, 0, 2, 0x13, 0], DecodeError::LengthOverflow { field: "property" }),
        // Bytes after the properties.
        (&[0xE0, 3, 0x00, 0, 9], DecodeError::TrailingBytes(1)),
        // A property length of more than 4 bytes.
        (&[0xE0, 6, 0x00, 0x80, 0x80, 0x80, 0x80, 0x01], DecodeError::RemainingLengthTooLong),
        // An assigned client id that is not UTF-8.
        (&[0x20, 7, 0, 0, 4, 0x12, 0, 1, 0xFF], DecodeError::InvalidUtf8 { field: "property" }),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode(bytes), Err(expected), "decoding {bytes:02x?}");
    }
    // A v5 CONNECT whose properties run past the packet.
    let connect = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 9, 0, 1, b'c'];
    assert!(decode(&connect).is_err());
    // A CONNACK of one byte.
    assert!(decode(&[0x20, 1, 0]).is_err());
}

#[test]
fn encodes_a_v5_connack_with_an_assigned_client_id_golden_bytes() {
    let mut out = Vec::new();
    super::encode_connack_v5_assigned("ab", &mut out);
    assert_eq!(out, [0x20, 8, 0, 0, 5, 0x12, 0, 2, b'a', b'b']);
    let properties = ConnAckProperties { assigned_client_id: Some("ab".into()), ..Default::default() };
    let expected = Packet::ConnAck { session_present: false, code: 0, properties: Some(properties) };
    assert_eq!(decode(&out), Ok(Some((expected, out.len()))));
    // Long ids: the property length takes two and three bytes.
    for len in [200, 20_000] {
        let long = "x".repeat(len);
        let mut out = Vec::new();
        super::encode_connack_v5_assigned(&long, &mut out);
        assert!(matches!(decode(&out), Ok(Some((Packet::ConnAck { code: 0, .. }, n))) if n == out.len()), "{len}");
    }
}
