//! The traffic decoder (SUBACK, PUBLISH, PUBACK ... on the client; SUBSCRIBE on the
//! embedded target) over any bytes, in both versions: a packet or "need more" or an
//! error, never a panic, never more bytes than given; and the payload stamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockcap::protocol::mqtt::traffic::{decode_incoming, Stamp};

fuzz_target!(|data: &[u8]| {
    for v5 in [false, true] {
        if let Ok(Some((_, used))) = decode_incoming(data, v5) {
            assert!(used >= 2 && used <= data.len(), "a packet of {used} bytes in {}", data.len());
        }
    }
    if let Some(stamp) = Stamp::read(data) {
        let mut out = [0u8; 24];
        stamp.write(&mut out);
        assert_eq!(&out[..], &data[..24]);
    }
});
