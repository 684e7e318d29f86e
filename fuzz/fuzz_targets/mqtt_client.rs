//! The MQTT decoder as the client uses it: the bytes a target sends after our CONNECT
//! (its CONNACK, 3.1.1 or 5 with properties), and the head of a held connection's
//! receive queue (MQTT 5's DISCONNECT and AUTH among it); and the MQTT 5 CONNECT the
//! client sends, with properties taken from the input, decoded back as it was encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockcap::protocol::mqtt::{self, client, Connect, ConnectProperties, Packet};

/// An MQTT 5 CONNECT whose properties and client id come from `data`: it decodes to
/// what was encoded, and so does the 3.1.1 one.
fn connect_round_trip(data: &[u8]) {
    let word = |i: usize| data.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let text = String::from_utf8_lossy(data.get(12..).unwrap_or_default());
    let half = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let (key, value) = text.split_at(half);
    let properties = ConnectProperties {
        session_expiry_s: word(0),
        receive_maximum: word(4).map(|n| n as u16),
        maximum_packet_size: word(8),
        user_properties: if key.is_empty() { Vec::new() } else { vec![(key.into(), value.into())] },
    };
    for v5 in [Some(&properties), None] {
        let c = Connect { v5, client_id: value, keep_alive_s: 30, clean_session: true, username: None, password: None };
        let mut out = Vec::new();
        mqtt::encode_connect(&c, &mut out);
        let level = if v5.is_some() { mqtt::PROTOCOL_LEVEL_5 } else { mqtt::PROTOCOL_LEVEL };
        let expected = Packet::Connect { client_id: value.into(), keep_alive_s: 30, protocol_level: level };
        assert_eq!(mqtt::decode(&out), Ok(Some((expected, out.len()))));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = client::answer(data);
    let (whole, _) = client::scan_head(data);
    assert!(whole <= data.len(), "took {whole} of {} bytes", data.len());
    if let Ok(Some((_, used))) = mqtt::decode(data) {
        assert!(used >= 2 && used <= data.len(), "a packet of {used} bytes in {}", data.len());
        assert!(whole >= used, "the scan took {whole} bytes, the first packet has {used}");
    }
    if let Ok(Some((body, end))) = mqtt::packet_bounds(data) {
        assert!(body <= end && end <= mqtt::MAX_PACKET_LEN);
    }
    connect_round_trip(data);
});
