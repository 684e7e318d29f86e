//! The MQTT decoder as the client uses it: the bytes a target sends after our CONNECT
//! (its CONNACK), and the head of a held connection's receive queue.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockcap::protocol::mqtt::{self, client};

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
});
