//! The probe's sock_diag reply parser: one datagram received from the kernel, walked
//! as a census walks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probe::census::census_of_datagram;
use probe::Filter;

fuzz_target!(|data: &[u8]| {
    let _ = census_of_datagram(data, &Filter::server(37887));
    let _ = census_of_datagram(data, &Filter::client(37887));
});
