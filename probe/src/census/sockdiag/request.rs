//! sock_diag dump requests, without I/O: the request header and body for one walk or one
//! family, and the [`Filter`] as an `inet_diag` bytecode program.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY};

use super::layout::{NLMSG_HDR_LEN, TCPDIAG_GETSOCK};
use crate::census::filter::Filter;

/// `struct inet_diag_req_v2`.
const REQ_V2_LEN: usize = 56;
/// `struct inet_diag_req` (the compatibility request).
const REQ_COMPAT_LEN: usize = 60;
/// `struct nlattr`.
const NLA_HDR_LEN: usize = 4;

/// `INET_DIAG_REQ_BYTECODE`: the request attribute holding the filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Bytecode operations (`enum { INET_DIAG_BC_NOP, ... }`).
const INET_DIAG_BC_S_COND: u8 = 7;
const INET_DIAG_BC_D_COND: u8 = 8;
const INET_DIAG_BC_S_EQ: u8 = 11;
const INET_DIAG_BC_D_EQ: u8 = 12;

/// Every TCP state, 1 (ESTABLISHED) to 12 (NEW_SYN_RECV), as a request state mask:
/// TIME_WAIT sockets and SYN_RECV request sockets are dumped too.
pub(crate) const ALL_STATES: u32 = 0x1ffe;
/// Only listening sockets (TCP_LISTEN is 10), as a request state mask: the kernel then
/// walks the listening hash alone.
pub(crate) const LISTEN_ONLY: u32 = 1 << 10;

/// Which TCP sockets one dump request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dump {
    /// IPv4 and IPv6 in one walk (`TCPDIAG_GETSOCK`, family `AF_UNSPEC`).
    BothFamilies,
    /// One family, `AF_INET` or `AF_INET6` (`SOCK_DIAG_BY_FAMILY`).
    Family(u8),
}

/// Append a dump request for the TCP sockets in `states` (a mask of `1 << state`, such as
/// [`ALL_STATES`]) that match `filter` to `out`.
///
/// Ports go twice: into the request's socket id, which `inet_diag_dump_icsk` compares
/// before anything else (a cheap pre-filter over the established hash, including
/// TIME_WAIT and request sockets), and into the bytecode, which is the kernel's documented
/// filter. Addresses go only into the bytecode (`S_COND`/`D_COND` with a full-length
/// prefix). An IPv4 address also matches IPv4-mapped addresses of IPv6 sockets, as in `ss`.
#[cfg(test)]
pub(crate) fn dump_request(dump: Dump, filter: &Filter, states: u32, seq: u32, out: &mut Vec<u8>) {
    dump_request_ext(dump, filter, states, 0, seq, out)
}

/// `idiag_ext` bit that asks for `INET_DIAG_SKMEMINFO` (attribute 7): `1 << (7 - 1)`.
pub(crate) const EXT_SKMEMINFO: u8 = 1 << (INET_DIAG_SKMEMINFO - 1);
/// The attribute with the socket's memory (`SK_MEMINFO_*` u32s).
pub(crate) const INET_DIAG_SKMEMINFO: u16 = 7;

/// [`dump_request`] asking also for the attributes in `ext` (a mask such as [`EXT_SKMEMINFO`]).
pub(crate) fn dump_request_ext(dump: Dump, filter: &Filter, states: u32, ext: u8, seq: u32, out: &mut Vec<u8>) {
    let start = out.len();
    let bytecode = bytecode(filter);
    let attr_len = if bytecode.is_empty() { 0 } else { NLA_HDR_LEN + bytecode.len() };
    let (kind, body_len) = match dump {
        Dump::BothFamilies => (TCPDIAG_GETSOCK, REQ_COMPAT_LEN),
        Dump::Family(_) => (SOCK_DIAG_BY_FAMILY, REQ_V2_LEN),
    };
    let total = NLMSG_HDR_LEN + body_len + attr_len;

    // struct nlmsghdr
    out.extend_from_slice(&(total as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel

    match dump {
        Dump::BothFamilies => {
            // struct inet_diag_req: family (any), src_len, dst_len, idiag_ext;
            // the socket id; states; idiag_dbs (unused). The protocol is in the type.
            out.extend_from_slice(&[AF_UNSPEC, 0, 0, ext]);
            socket_id(filter, out);
            out.extend_from_slice(&states.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
        }
        Dump::Family(family) => {
            // struct inet_diag_req_v2: family, protocol, idiag_ext, pad; states;
            // the socket id.
            out.extend_from_slice(&[family, IPPROTO_TCP, ext, 0]);
            out.extend_from_slice(&states.to_ne_bytes());
            socket_id(filter, out);
        }
    }

    if !bytecode.is_empty() {
        out.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        out.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        out.extend_from_slice(&bytecode);
    }
    debug_assert_eq!(out.len() - start, total);
}

/// `struct inet_diag_sockid`: ports (network order), then addresses, interface and cookie,
/// all zero: a dump ignores them.
fn socket_id(filter: &Filter, out: &mut Vec<u8>) {
    out.extend_from_slice(&filter.local_port.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&filter.remote_port.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&[0; 16 + 16 + 4 + 8]);
}

/// The filter as an `inet_diag` bytecode program: a conjunction of conditions.
///
/// Each operation is `{ code: u8, yes: u8, no: u16 }` followed by its operand. The kernel
/// moves `yes` bytes forward when the condition holds and `no` bytes when it does not, and
/// accepts a socket when it lands exactly on the end. So each condition's `yes` is its own
/// length (on to the next condition) and its `no` jumps 4 bytes past the end (reject), the
/// form `inet_diag_bc_audit` accepts.
pub(crate) fn bytecode(filter: &Filter) -> Vec<u8> {
    let filter = filter.canonical();
    let mut ops: Vec<Vec<u8>> = Vec::with_capacity(4);
    if let Some(port) = filter.local_port {
        ops.push(port_op(INET_DIAG_BC_S_EQ, port));
    }
    if let Some(port) = filter.remote_port {
        ops.push(port_op(INET_DIAG_BC_D_EQ, port));
    }
    if let Some(addr) = filter.local_addr {
        ops.push(host_op(INET_DIAG_BC_S_COND, addr));
    }
    if let Some(addr) = filter.remote_addr {
        ops.push(host_op(INET_DIAG_BC_D_COND, addr));
    }

    let total: usize = ops.iter().map(Vec::len).sum();
    let mut program = Vec::with_capacity(total);
    for mut op in ops {
        let remaining = total - program.len();
        op[1] = op.len() as u8; // yes: the next operation
        op[2..4].copy_from_slice(&((remaining + 4) as u16).to_ne_bytes()); // no: reject
        program.extend_from_slice(&op);
    }
    program
}

/// A port comparison: the operation, then a second `inet_diag_bc_op` whose `no` field holds
/// the port in host order. `yes` and `no` are filled in by [`bytecode`].
fn port_op(code: u8, port: u16) -> Vec<u8> {
    let mut op = vec![code, 0, 0, 0, 0, 0];
    op.extend_from_slice(&port.to_ne_bytes());
    op
}

/// An address condition: the operation, then `struct inet_diag_hostcond { u8 family;
/// u8 prefix_len; int port; __be32 addr[]; }` with any port (-1) and the whole address.
fn host_op(code: u8, addr: IpAddr) -> Vec<u8> {
    let mut op = vec![code, 0, 0, 0];
    let (family, bytes): (u8, &[u8]) = match &addr {
        IpAddr::V4(a) => (AF_INET, &a.octets()[..]),
        IpAddr::V6(a) => (AF_INET6, &a.octets()[..]),
    };
    op.extend_from_slice(&[family, (bytes.len() * 8) as u8, 0, 0]);
    op.extend_from_slice(&(-1i32).to_ne_bytes());
    op.extend_from_slice(bytes);
    op
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_core::Emitable;
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};

    use super::*;
    use crate::state::TcpState;

    #[test]
    fn a_listeners_request_asks_for_the_listen_state_alone() {
        let mut req = Vec::new();
        dump_request(Dump::Family(AF_INET), &Filter::server(1883), LISTEN_ONLY, 1, &mut req);
        let states = &req[NLMSG_HDR_LEN + 4..NLMSG_HDR_LEN + 8];
        assert_eq!(states, (1u32 << TcpState::Listen as u8).to_ne_bytes());
        let mut compat = Vec::new();
        dump_request(Dump::BothFamilies, &Filter::server(1883), LISTEN_ONLY, 1, &mut compat);
        // inet_diag_req: family and lengths (4), socket id (48), then the states
        assert_eq!(&compat[NLMSG_HDR_LEN + 52..NLMSG_HDR_LEN + 56], (1u32 << 10).to_ne_bytes());
    }

    #[test]
    fn a_memory_request_asks_for_skmeminfo_in_both_forms() {
        let (mut v2, mut compat) = (Vec::new(), Vec::new());
        dump_request_ext(Dump::Family(AF_INET), &Filter::server(1883), ALL_STATES, EXT_SKMEMINFO, 1, &mut v2);
        dump_request_ext(Dump::BothFamilies, &Filter::server(1883), ALL_STATES, EXT_SKMEMINFO, 1, &mut compat);
        // idiag_ext is the third byte of inet_diag_req_v2, the fourth of inet_diag_req.
        assert_eq!(&v2[NLMSG_HDR_LEN..NLMSG_HDR_LEN + 4], [AF_INET, 6, 0x40, 0]);
        assert_eq!(compat[NLMSG_HDR_LEN + 3], 0x40);
        assert_eq!(ExtensionFlags::SKMEMINFO.bits(), EXT_SKMEMINFO, "as netlink-packet-sock-diag has it");
        let mut plain = Vec::new();
        dump_request(Dump::Family(AF_INET), &Filter::server(1883), ALL_STATES, 1, &mut plain);
        assert_eq!(plain[NLMSG_HDR_LEN + 2], 0, "a census asks for no attribute");
    }

    /// A server-side census of 127.0.0.1:8080 seen from 127.0.0.2, byte by byte.
    #[test]
    fn golden_request() {
        let filter = Filter {
            local_port: Some(8080),
            remote_addr: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            ..Filter::default()
        };
        let mut req = Vec::new();
        dump_request(Dump::Family(AF_INET), &filter, ALL_STATES, 7, &mut req);
        let ne16 = |v: u16| v.to_ne_bytes();
        let ne32 = |v: u32| v.to_ne_bytes();
        let mut expected: Vec<u8> = Vec::new();
        // nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq 7, pid 0
        expected.extend(ne32(16 + 56 + 4 + 8 + 16));
        expected.extend(ne16(20));
        expected.extend(ne16(0x301));
        expected.extend(ne32(7));
        expected.extend(ne32(0));
        // inet_diag_req_v2: AF_INET, IPPROTO_TCP, no extensions, pad, every state
        expected.extend([2, 6, 0, 0]);
        expected.extend(ne32(0x1ffe));
        // socket id: sport 8080 (network order), dport any, the rest zero
        expected.extend([0x1f, 0x90, 0, 0]);
        expected.extend([0; 44]);
        // nlattr INET_DIAG_REQ_BYTECODE, 4 + 24 bytes
        expected.extend(ne16(4 + 24));
        expected.extend(ne16(1));
        // S_EQ: yes 8 (next op), no 24 + 4 (past the end: reject); operand op: port 8080
        expected.extend([11, 8]);
        expected.extend(ne16(28));
        expected.extend([0, 0]);
        expected.extend(ne16(8080));
        // D_COND: yes 16 (the end: accept), no 16 + 4; hostcond AF_INET /32, any port
        expected.extend([8, 16]);
        expected.extend(ne16(20));
        expected.extend([2, 32, 0, 0]);
        expected.extend((-1i32).to_ne_bytes());
        expected.extend([127, 0, 0, 2]);
        assert_eq!(req, expected);
    }

    /// A client-side census of port 1883 in one walk (`TCPDIAG_GETSOCK`), byte by byte.
    #[test]
    fn golden_request_both_families() {
        let mut req = Vec::new();
        dump_request(Dump::BothFamilies, &Filter::client(1883), ALL_STATES, 9, &mut req);
        let mut expected: Vec<u8> = Vec::new();
        // nlmsghdr: length, TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq 9, pid 0
        expected.extend(88u32.to_ne_bytes());
        expected.extend(18u16.to_ne_bytes());
        expected.extend(0x301u16.to_ne_bytes());
        expected.extend(9u32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        // inet_diag_req: AF_UNSPEC (both families), src_len, dst_len, no extensions
        expected.extend([0, 0, 0, 0]);
        // socket id: sport any, dport 1883 (network order), the rest zero
        expected.extend([0, 0, 0x07, 0x5b]);
        expected.extend([0; 44]);
        // every state; idiag_dbs
        expected.extend(0x1ffeu32.to_ne_bytes());
        expected.extend(0u32.to_ne_bytes());
        // nlattr INET_DIAG_REQ_BYTECODE, 4 + 8 bytes: D_EQ, yes 8 (the end: accept),
        // no 8 + 4 (reject); operand op: port 1883
        expected.extend(12u16.to_ne_bytes());
        expected.extend(1u16.to_ne_bytes());
        expected.extend([12, 8]);
        expected.extend(12u16.to_ne_bytes());
        expected.extend([0, 0]);
        expected.extend(1883u16.to_ne_bytes());
        assert_eq!(req, expected);
    }

    /// The fixed part of the request is what netlink-packet-sock-diag emits for it.
    #[test]
    fn request_agrees_with_netlink_packet_sock_diag() {
        let mut req = Vec::new();
        let filter = Filter { remote_port: Some(1883), ..Filter::default() };
        dump_request(Dump::Family(AF_INET6), &filter, ALL_STATES, 1, &mut req);
        let mut socket_id = SocketId::new_v6();
        socket_id.destination_port = 1883;
        let typed = InetRequest {
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(ALL_STATES),
            socket_id,
        };
        let mut emitted = vec![0; typed.buffer_len()];
        typed.emit(&mut emitted);
        assert_eq!(&req[NLMSG_HDR_LEN..NLMSG_HDR_LEN + REQ_V2_LEN], &emitted[..]);
    }

    #[test]
    fn empty_filter_sends_no_bytecode() {
        let mut req = Vec::new();
        dump_request(Dump::Family(AF_INET), &Filter::default(), ALL_STATES, 7, &mut req);
        assert_eq!(req.len(), NLMSG_HDR_LEN + REQ_V2_LEN);
        assert!(bytecode(&Filter::default()).is_empty());
    }

    /// `inet_diag_bc_audit` and `inet_diag_bc_run` of net/ipv4/inet_diag.c, for the
    /// operations we emit: true if the program is accepted and lets the socket through.
    fn kernel_runs(program: &[u8], family: u8, local: (IpAddr, u16), remote: (IpAddr, u16)) -> bool {
        let op = |at: usize| {
            (program[at], program[at + 1] as usize, u16::from_ne_bytes([program[at + 2], program[at + 3]]) as usize)
        };
        // audit
        let mut at = 0;
        while at < program.len() {
            let (code, yes, no) = op(at);
            let len = program.len() - at;
            let min = match code {
                INET_DIAG_BC_S_EQ | INET_DIAG_BC_D_EQ => 8,
                INET_DIAG_BC_S_COND | INET_DIAG_BC_D_COND => 12 + if program[at + 4] == AF_INET { 4 } else { 16 },
                _ => panic!("unexpected op {code}"),
            };
            assert!(yes >= min && yes <= len + 4 && yes % 4 == 0, "yes {yes} at {at}");
            assert!(no >= min && no <= len + 4 && no % 4 == 0, "no {no} at {at}");
            at += yes;
        }
        assert_eq!(at, program.len());
        // run
        let v6_words = |a: IpAddr| match a {
            IpAddr::V4(a) => {
                let mut w = [0u8; 16];
                w[..4].copy_from_slice(&a.octets());
                w
            }
            IpAddr::V6(a) => a.octets(),
        };
        let mut at = 0isize;
        let len = program.len() as isize;
        while at < len {
            let (code, yes, no) = op(at as usize);
            let a = at as usize;
            let pass = match code {
                INET_DIAG_BC_S_EQ => local.1 == u16::from_ne_bytes([program[a + 6], program[a + 7]]),
                INET_DIAG_BC_D_EQ => remote.1 == u16::from_ne_bytes([program[a + 6], program[a + 7]]),
                _ => {
                    let addr = v6_words(if code == INET_DIAG_BC_S_COND { local.0 } else { remote.0 });
                    let (cond_family, bits) = (program[a + 4], program[a + 5] as usize);
                    let cond = &program[a + 12..a + yes];
                    if cond_family == family {
                        addr[..bits / 8] == cond[..bits / 8]
                    } else {
                        family == AF_INET6
                            && cond_family == AF_INET
                            && addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
                            && addr[12..16] == cond[..4]
                    }
                }
            };
            at += if pass { yes as isize } else { no as isize };
        }
        at == len
    }

    #[test]
    fn bytecode_decides_as_filter_matches() {
        let v4 = |d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
        let mapped = |d| IpAddr::V6(Ipv4Addr::new(127, 0, 0, d).to_ipv6_mapped());
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let filters = [
            Filter { local_port: Some(80), ..Filter::default() },
            Filter { remote_port: Some(80), ..Filter::default() },
            Filter { local_port: Some(80), remote_port: Some(5000), ..Filter::default() },
            Filter { local_addr: Some(v4(1)), ..Filter::default() },
            Filter { remote_addr: Some(v4(2)), local_port: Some(80), ..Filter::default() },
            Filter { remote_addr: Some(mapped(2)), ..Filter::default() },
            Filter { local_addr: Some(v6), remote_port: Some(80), ..Filter::default() },
            Filter { local_port: Some(80), remote_port: Some(5000), local_addr: Some(v4(1)), remote_addr: Some(v4(2)) },
        ];
        let sockets = [
            (AF_INET, (v4(1), 80), (v4(2), 5000)),
            (AF_INET, (v4(1), 5000), (v4(2), 80)),
            (AF_INET, (v4(3), 80), (v4(2), 5001)),
            (AF_INET6, (mapped(1), 80), (mapped(2), 5000)),
            (AF_INET6, (v6, 80), (v6, 5000)),
            (AF_INET6, (v6, 5000), (v6, 80)),
        ];
        for filter in &filters {
            let program = bytecode(filter);
            for &(family, local, remote) in &sockets {
                assert_eq!(
                    kernel_runs(&program, family, local, remote),
                    filter.matches(local.into(), remote.into()),
                    "{filter:?} on {local:?} -> {remote:?}"
                );
            }
        }
    }
}
