//! The sock_diag wire format for a TCP census, without I/O: the dump requests a census sends
//! (with the filter as `INET_DIAG_REQ_BYTECODE`), and a zero-copy walk over the kernel's
//! reply that reads only what a census needs (family, state, ports, addresses) from each
//! `inet_diag_msg`.
//!
//! Two requests: `TCPDIAG_GETSOCK` with the original `struct inet_diag_req`, which the
//! kernel keeps for compatibility and which alone dumps IPv4 and IPv6 sockets in one walk
//! of the socket tables; and `SOCK_DIAG_BY_FAMILY` with `struct inet_diag_req_v2`, one
//! family per walk. Walking a table of a million sockets costs about 0.1 s, so the first
//! is preferred and the second is the fallback.
//!
//! Port conditions use `INET_DIAG_BC_S_EQ`/`D_EQ`; a kernel without them answers EINVAL,
//! and the census reports that error.
//!
//! Layouts are those of `include/uapi/linux/netlink.h` and `include/uapi/linux/inet_diag.h`.
//! Netlink integers are in host byte order; ports and addresses in the socket id are in
//! network byte order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY};

use super::Filter;

/// `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_V2_LEN: usize = 56;
/// `struct inet_diag_req` (the compatibility request).
const REQ_COMPAT_LEN: usize = 60;
/// `struct inet_diag_msg`.
pub(crate) const DIAG_MSG_LEN: usize = 72;
/// `struct nlattr`.
const NLA_HDR_LEN: usize = 4;

/// `TCPDIAG_GETSOCK`: the compatibility request type, also the type of its replies.
const TCPDIAG_GETSOCK: u16 = 18;
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
pub(crate) fn dump_request(dump: Dump, filter: &Filter, states: u32, seq: u32, out: &mut Vec<u8>) {
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
            // struct inet_diag_req: family (any), src_len, dst_len, idiag_ext (none);
            // the socket id; states; idiag_dbs (unused). The protocol is in the type.
            out.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
            socket_id(filter, out);
            out.extend_from_slice(&states.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
        }
        Dump::Family(family) => {
            // struct inet_diag_req_v2: family, protocol, idiag_ext (none), pad; states;
            // the socket id.
            out.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
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

/// What one received datagram says about the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More datagrams follow.
    More,
    /// `NLMSG_DONE`: the dump is complete.
    Done,
}

/// A reply the parser could not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// `NLMSG_ERROR` (or a `NLMSG_DONE` carrying an error): the kernel's errno, positive.
    Kernel(i32),
    /// The bytes do not hold well-formed netlink messages.
    Malformed(&'static str),
}

/// Walk the netlink messages in one received datagram, calling `visit` for each socket of
/// the dump numbered `seq`. Messages of other sequence numbers (a reply to an abandoned
/// request) are skipped.
pub(crate) fn parse_reply(
    mut buf: &[u8],
    seq: u32,
    mut visit: impl FnMut(DiagMsg<'_>),
) -> Result<Progress, ReplyError> {
    while !buf.is_empty() {
        let header: &[u8; NLMSG_HDR_LEN] = buf
            .get(..NLMSG_HDR_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(ReplyError::Malformed("truncated netlink header"))?;
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let msg_seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
        if len < NLMSG_HDR_LEN || len > buf.len() {
            return Err(ReplyError::Malformed("netlink message length out of bounds"));
        }
        let payload = &buf[NLMSG_HDR_LEN..len];
        // Messages are aligned to 4 bytes; the last one may lack its padding.
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];

        if msg_seq != seq {
            continue;
        }
        match kind {
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => visit(DiagMsg::new(payload)?),
            NLMSG_DONE => {
                return match error_code(payload) {
                    Some(errno) if errno < 0 => Err(ReplyError::Kernel(-errno)),
                    _ => Ok(Progress::Done),
                }
            }
            NLMSG_ERROR => match error_code(payload) {
                Some(0) => {} // an acknowledgement
                Some(errno) => return Err(ReplyError::Kernel(errno.saturating_abs())),
                None => return Err(ReplyError::Malformed("truncated NLMSG_ERROR")),
            },
            NLMSG_OVERRUN => return Err(ReplyError::Malformed("NLMSG_OVERRUN: data lost")),
            NLMSG_NOOP => {}
            _ => return Err(ReplyError::Malformed("unexpected netlink message type")),
        }
    }
    Ok(Progress::More)
}

/// The `int error` that opens an `NLMSG_ERROR` or `NLMSG_DONE` payload.
fn error_code(payload: &[u8]) -> Option<i32> {
    payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A view of one `struct inet_diag_msg`; its attributes are not read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiagMsg<'a>(&'a [u8; DIAG_MSG_LEN]);

impl<'a> DiagMsg<'a> {
    fn new(payload: &'a [u8]) -> Result<DiagMsg<'a>, ReplyError> {
        payload
            .get(..DIAG_MSG_LEN)
            .and_then(|p| p.try_into().ok())
            .map(DiagMsg)
            .ok_or(ReplyError::Malformed("truncated inet_diag_msg"))
    }

    /// `idiag_family`: `AF_INET` or `AF_INET6`.
    pub(crate) fn family(&self) -> u8 {
        self.0[0]
    }

    /// `idiag_state`: the kernel's state number (TIME_WAIT sockets report their substate).
    pub(crate) fn state(&self) -> u8 {
        self.0[1]
    }

    /// `id.idiag_sport` and `id.idiag_src`.
    pub(crate) fn local(&self) -> SocketAddr {
        SocketAddr::new(self.local_addr(), u16::from_be_bytes([self.0[4], self.0[5]]))
    }

    /// `id.idiag_dport` and `id.idiag_dst`.
    pub(crate) fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.remote_addr(), u16::from_be_bytes([self.0[6], self.0[7]]))
    }

    /// `idiag_wqueue`: for a listening socket, its accept queue's capacity (the backlog
    /// given to listen(2), capped by net.core.somaxconn), as `ss -l` shows in Send-Q.
    pub(crate) fn wqueue(&self) -> u32 {
        u32::from_ne_bytes([self.0[60], self.0[61], self.0[62], self.0[63]])
    }

    /// `idiag_inode`: the socket's inode, the `INODE` of `socket:[INODE]` in the
    /// `/proc/PID/fd` links of the processes holding it (0 for TIME_WAIT and request
    /// sockets, which no descriptor holds).
    pub(crate) fn inode(&self) -> u64 {
        u64::from(u32::from_ne_bytes([self.0[68], self.0[69], self.0[70], self.0[71]]))
    }

    /// `id.idiag_src`.
    pub(crate) fn local_addr(&self) -> IpAddr {
        self.addr(8)
    }

    /// `id.idiag_dst`.
    pub(crate) fn remote_addr(&self) -> IpAddr {
        self.addr(24)
    }

    fn addr(&self, at: usize) -> IpAddr {
        let b = &self.0[at..at + 16];
        if self.family() == AF_INET6 {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_core::{Emitable, Parseable};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags};

    use super::*;
    use crate::state::TcpState;

    // Replies of the kernel to `Filter::server(37887)` dumps, recorded on Linux 6.18
    // (x86_64) with `census::tests::record_golden_replies`. Listeners on 127.0.0.1:37887
    // (with TCP_DEFER_ACCEPT, so the client that sent nothing left a SYN_RECV request
    // socket; the TIME_WAIT socket is the server end of a connection the server closed
    // first) and [::1]:37887. Sequence numbers 1, 2, 3.
    /// TCPDIAG_GETSOCK (both families, one walk), `Filter::server(37887)`.
    #[rustfmt::skip]
    const REPLY_BOTH: [u8; 716] = [
        // TCPDIAG_GETSOCK: AF_INET LISTEN, sport 37887, dport 0
        0x7c, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x93, 0xff, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcf, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x43, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x52, 0x00, 0x00, 0x00,
        // TCPDIAG_GETSOCK: AF_INET6 LISTEN, sport 37887, dport 0
        0x84, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x0a, 0x0a, 0x00, 0x00, 0x93, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x49, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00,
        0x12, 0x00, 0x00, 0x00,
        // TCPDIAG_GETSOCK: AF_INET SYN_RECV, sport 37887, dport 51466
        0x60, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x03, 0x01, 0x00, 0x93, 0xff, 0xc9, 0x0a, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd1, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        // TCPDIAG_GETSOCK: AF_INET ESTABLISHED, sport 37887, dport 51450
        0x7c, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x01, 0x00, 0x00, 0x93, 0xff, 0xc8, 0xfa, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd2, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x45, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x52, 0x00, 0x00, 0x00,
        // TCPDIAG_GETSOCK: AF_INET TIME_WAIT, sport 37887, dport 51458
        0x60, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x06, 0x03, 0x00, 0x93, 0xff, 0xc9, 0x02, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd3, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x60, 0xea, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        // TCPDIAG_GETSOCK: AF_INET6 ESTABLISHED, sport 37887, dport 58560
        0x7c, 0x00, 0x00, 0x00, 0x12, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x0a, 0x01, 0x00, 0x00, 0x93, 0xff, 0xe4, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xd4, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x4b, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x12, 0x00, 0x00, 0x00,
        // NLMSG_DONE (a datagram of its own)
        0x14, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    /// SOCK_DIAG_BY_FAMILY, AF_INET, `Filter::server(37887)`.
    #[rustfmt::skip]
    const REPLY_V4: [u8; 460] = [
        // SOCK_DIAG_BY_FAMILY: AF_INET LISTEN, sport 37887, dport 0
        0x7c, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x93, 0xff, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcf, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x43, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x52, 0x00, 0x00, 0x00,
        // SOCK_DIAG_BY_FAMILY: AF_INET SYN_RECV, sport 37887, dport 51466
        0x60, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x03, 0x01, 0x00, 0x93, 0xff, 0xc9, 0x0a, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd1, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xe4, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        // SOCK_DIAG_BY_FAMILY: AF_INET ESTABLISHED, sport 37887, dport 51450
        0x7c, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x01, 0x00, 0x00, 0x93, 0xff, 0xc8, 0xfa, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd2, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x45, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x52, 0x00, 0x00, 0x00,
        // SOCK_DIAG_BY_FAMILY: AF_INET TIME_WAIT, sport 37887, dport 51458
        0x60, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x02, 0x06, 0x03, 0x00, 0x93, 0xff, 0xc9, 0x02, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd3, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x5c, 0xea, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        // NLMSG_DONE (a datagram of its own)
        0x14, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    /// SOCK_DIAG_BY_FAMILY, AF_INET6, `Filter::server(37887)`.
    #[rustfmt::skip]
    const REPLY_V6: [u8; 276] = [
        // SOCK_DIAG_BY_FAMILY: AF_INET6 LISTEN, sport 37887, dport 0
        0x84, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x0a, 0x0a, 0x00, 0x00, 0x93, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x49, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00,
        0x12, 0x00, 0x00, 0x00,
        // SOCK_DIAG_BY_FAMILY: AF_INET6 ESTABLISHED, sport 37887, dport 58560
        0x7c, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x0a, 0x01, 0x00, 0x00, 0x93, 0xff, 0xe4, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xd4, 0x89, 0x17, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x4b, 0x7d, 0x1b, 0x00, 0x05, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x15, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x16, 0x00, 0x12, 0x00, 0x00, 0x00,
        // NLMSG_DONE (a datagram of its own)
        0x14, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x12, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];

    /// (family, state, local end, remote end)
    type Row = (u8, u8, SocketAddr, SocketAddr);

    fn rows(reply: &[u8], seq: u32) -> (Vec<Row>, Result<Progress, ReplyError>) {
        let mut rows = Vec::new();
        let progress = parse_reply(reply, seq, |m| rows.push((m.family(), m.state(), m.local(), m.remote())));
        (rows, progress)
    }

    const PORT: u16 = 37887;

    fn v4_rows() -> Vec<Row> {
        let lo = |port| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        vec![
            (AF_INET, TcpState::Listen as u8, lo(PORT), any),
            (AF_INET, TcpState::SynRecv as u8, lo(PORT), lo(51466)),
            (AF_INET, TcpState::Established as u8, lo(PORT), lo(51450)),
            (AF_INET, TcpState::TimeWait as u8, lo(PORT), lo(51458)),
        ]
    }

    fn v6_rows() -> Vec<Row> {
        let lo = |port| SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
        let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0);
        vec![
            (AF_INET6, TcpState::Listen as u8, lo(PORT), any),
            (AF_INET6, TcpState::Established as u8, lo(PORT), lo(58560)),
        ]
    }

    #[test]
    fn golden_reply_both_families() {
        let (rows, progress) = rows(&REPLY_BOTH, 1);
        assert_eq!(progress, Ok(Progress::Done));
        let (v4, v6) = (v4_rows(), v6_rows());
        // The kernel walks the listeners, then the established hash, by bucket.
        assert_eq!(rows, [v4[0], v6[0], v4[1], v4[2], v4[3], v6[1]]);
    }

    /// Sockets that a descriptor holds carry their inode (as /proc/net/tcp{,6} list it);
    /// TIME_WAIT and request sockets carry 0.
    #[test]
    fn golden_inodes() {
        let mut inodes = Vec::new();
        parse_reply(&REPLY_BOTH, 1, |m| inodes.push((m.family(), m.state(), m.inode()))).unwrap();
        let mut backlogs = Vec::new();
        parse_reply(&REPLY_BOTH, 1, |m| backlogs.extend((m.state() == TcpState::Listen as u8).then(|| m.wqueue())))
            .unwrap();
        // both listeners were made with listen(128)
        assert_eq!(backlogs, [128, 128]);
        let (listen, est, tw, syn_recv) =
            (TcpState::Listen as u8, TcpState::Established as u8, TcpState::TimeWait as u8, TcpState::SynRecv as u8);
        assert_eq!(
            inodes,
            [
                (AF_INET, listen, 1_801_539),
                (AF_INET6, listen, 1_801_545),
                (AF_INET, syn_recv, 0),
                (AF_INET, est, 1_801_541),
                (AF_INET, tw, 0),
                (AF_INET6, est, 1_801_547),
            ]
        );
    }

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
    fn golden_reply_ipv4() {
        let (rows, progress) = rows(&REPLY_V4, 2);
        assert_eq!(progress, Ok(Progress::Done));
        assert_eq!(rows, v4_rows());
    }

    #[test]
    fn golden_reply_ipv6() {
        let (rows, progress) = rows(&REPLY_V6, 3);
        assert_eq!(progress, Ok(Progress::Done));
        assert_eq!(rows, v6_rows());
    }

    /// The fast view reads what netlink-packet-sock-diag's typed parser reads.
    #[test]
    fn view_agrees_with_netlink_packet_sock_diag() {
        for (reply, seq) in [(&REPLY_BOTH[..], 1), (&REPLY_V4[..], 2), (&REPLY_V6[..], 3)] {
            let mut seen = 0;
            parse_reply(reply, seq, |m| {
                let typed = InetResponse::parse(&m.0[..]).unwrap().header;
                assert_eq!(typed.family, m.family());
                assert_eq!(typed.state, m.state());
                assert_eq!(typed.socket_id.source_port, m.local().port());
                assert_eq!(typed.socket_id.destination_port, m.remote().port());
                assert_eq!(typed.socket_id.source_address, m.local_addr());
                assert_eq!(typed.socket_id.destination_address, m.remote_addr());
                assert_eq!(u64::from(typed.inode), m.inode());
                assert_eq!(typed.send_queue, m.wqueue());
                seen += 1;
            })
            .unwrap();
            assert!(seen > 0);
        }
    }

    #[test]
    fn other_sequence_numbers_are_skipped() {
        let (rows, progress) = rows(&REPLY_V4, 1);
        assert!(rows.is_empty());
        assert_eq!(progress, Ok(Progress::More));
    }

    /// A datagram cut anywhere is an error or a partial walk, never a panic.
    #[test]
    fn truncated_replies_are_errors() {
        for cut in 1..REPLY_V4.len() {
            let (_, progress) = rows(&REPLY_V4[..cut], 2);
            assert_ne!(progress, Ok(Progress::Done), "cut at {cut}");
        }
        assert_eq!(rows(&REPLY_V4[..20], 2).1, Err(ReplyError::Malformed("netlink message length out of bounds")));
    }

    fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn kernel_errors_carry_the_errno() {
        let eperm = nlmsg(NLMSG_ERROR, 5, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(rows(&eperm, 5).1, Err(ReplyError::Kernel(libc::EPERM)));
        let done_einval = nlmsg(NLMSG_DONE, 5, &(-libc::EINVAL).to_ne_bytes());
        assert_eq!(rows(&done_einval, 5).1, Err(ReplyError::Kernel(libc::EINVAL)));
        let ack = nlmsg(NLMSG_ERROR, 5, &0i32.to_ne_bytes());
        assert_eq!(rows(&ack, 5).1, Ok(Progress::More));
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
