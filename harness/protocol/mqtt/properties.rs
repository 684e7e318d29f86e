//! Property tests of the decoder (MQTT 3.1.1 and 5 packets alike): on random bytes and on mutated packets it never
//! panics, and what it decodes it decodes the same from the exact packet.

use super::encode::tests::{connect, encoded};
use super::{connack, connack_v5, decode, disconnect_v5, Connect, ConnectProperties, PINGREQ};

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
    let p = ConnectProperties {
        session_expiry_s: Some(60),
        receive_maximum: Some(5),
        maximum_packet_size: Some(4096),
        user_properties: vec![("name".into(), "value".into())],
    };
    let c5 = Connect { v5: Some(&p), ..c };
    let connack5 = [0x20, 12, 0, 0, 9, 0x13, 0, 5, 0x12, 0, 1, b'a', 0x24, 1];
    let seeds = [
        encoded(&c),
        encoded(&c5),
        connack(true, 0).to_vec(),
        connack_v5(false, 0x97).to_vec(),
        connack5.to_vec(),
        disconnect_v5(0x8E).to_vec(),
        PINGREQ.to_vec(),
    ];
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
