//! Recorded sock_diag replies for the parser's golden tests: the kernel's answers to
//! `Filter::server(37887)` dumps, recorded on Linux 6.18 (x86_64) with
//! `census::live::record_golden_replies`. Listeners on 127.0.0.1:37887 (with
//! TCP_DEFER_ACCEPT, so the client that sent nothing left a SYN_RECV request socket; the
//! TIME_WAIT socket is the server end of a connection the server closed first) and
//! [::1]:37887.
//!
//! Each socket's `inet_diag_msg` (with its attributes) is written once, as the one-walk
//! dump returned it, in `probe/testdata/sock_diag_sockets.txt`; [`both_families`], [`ipv4`]
//! and [`ipv6`] frame them as the three dumps did, sequence numbers 1, 2 and 3. The
//! per-family dumps, recorded a moment later, differed from these messages only in the
//! `idiag_expires` of the SYN_RECV and TIME_WAIT sockets (4 ms less), which the parser
//! does not read.

use netlink_packet_core::NLMSG_DONE;
use netlink_packet_sock_diag::SOCK_DIAG_BY_FAMILY;

use super::layout::{NLMSG_HDR_LEN, TCPDIAG_GETSOCK};

/// `NLM_F_MULTI`: the flag on every message of a dump reply.
const NLM_F_MULTI: u16 = 2;
/// The netlink port id of the recording socket, in every reply header.
const PORT_ID: u32 = 0x6012;

/// One netlink message: `struct nlmsghdr` (`NLM_F_MULTI`, [`PORT_ID`]) and `payload`.
pub(super) fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR_LEN + payload.len());
    m.extend_from_slice(&((NLMSG_HDR_LEN + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&NLM_F_MULTI.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&PORT_ID.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// The recorded sockets: blocks of hex bytes, each under a `## name: ...` line.
const SOCKETS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/sock_diag_sockets.txt"));

/// The recorded `inet_diag_msg` of the socket `name` (`v4_listen`, `v6_established`, ...).
fn socket(name: &str) -> Vec<u8> {
    let header = format!("## {name}:");
    let mut lines = SOCKETS.lines().skip_while(|l| !l.starts_with(&header));
    assert!(lines.next().is_some(), "no socket {name} in sock_diag_sockets.txt");
    lines
        .take_while(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(str::split_ascii_whitespace)
        .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte"))
        .collect()
}

/// A dump's reply: each socket's message of type `kind`, then `NLMSG_DONE` (a datagram of
/// its own, here appended).
fn reply(kind: u16, seq: u32, sockets: &[&str]) -> Vec<u8> {
    let mut bytes: Vec<u8> = sockets.iter().flat_map(|name| nlmsg(kind, seq, &socket(name))).collect();
    bytes.extend(nlmsg(NLMSG_DONE, seq, &0i32.to_ne_bytes()));
    bytes
}

/// TCPDIAG_GETSOCK (both families, one walk): the kernel walks the listeners, then the
/// established hash, by bucket.
pub(super) fn both_families() -> Vec<u8> {
    let sockets = ["v4_listen", "v6_listen", "v4_syn_recv", "v4_established", "v4_time_wait", "v6_established"];
    reply(TCPDIAG_GETSOCK, 1, &sockets)
}

/// SOCK_DIAG_BY_FAMILY, AF_INET.
pub(super) fn ipv4() -> Vec<u8> {
    reply(SOCK_DIAG_BY_FAMILY, 2, &["v4_listen", "v4_syn_recv", "v4_established", "v4_time_wait"])
}

/// SOCK_DIAG_BY_FAMILY, AF_INET6.
pub(super) fn ipv6() -> Vec<u8> {
    reply(SOCK_DIAG_BY_FAMILY, 3, &["v6_listen", "v6_established"])
}
