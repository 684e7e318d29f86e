//! The embedded target's MQTT side: the bytes a client sends, received in reads of
//! a size the first byte chooses. The replies must not depend on how the stream was
//! cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockcap::embedded::replies_to_reads;
use sockcap::protocol::Protocol;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else { return };
    let cut = replies_to_reads(Protocol::Mqtt, stream.chunks(usize::from(first).max(1)));
    let whole = replies_to_reads(Protocol::Mqtt, stream.chunks(2048));
    assert_eq!(cut, whole, "replies differ when the stream is read {first} bytes at a time");
    let _ = replies_to_reads(Protocol::Tcp, stream.chunks(2048));
});
