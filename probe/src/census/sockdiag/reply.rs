//! sock_diag replies, without I/O: a walk over the netlink messages of one received
//! datagram, and a zero-copy view of each `inet_diag_msg` that reads only what a census
//! needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
use netlink_packet_sock_diag::{AF_INET6, SOCK_DIAG_BY_FAMILY};

use super::layout::{NLMSG_HDR_LEN, TCPDIAG_GETSOCK};

/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

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
                    // `saturating_neg`: a reply may say i32::MIN.
                    Some(errno) if errno < 0 => Err(ReplyError::Kernel(errno.saturating_neg())),
                    _ => Ok(Progress::Done),
                };
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

/// A view of one `struct inet_diag_msg`, and its attributes (read only when asked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiagMsg<'a>(&'a [u8; DIAG_MSG_LEN], &'a [u8]);

impl<'a> DiagMsg<'a> {
    fn new(payload: &'a [u8]) -> Result<DiagMsg<'a>, ReplyError> {
        payload
            .get(..DIAG_MSG_LEN)
            .and_then(|p| p.try_into().ok())
            .map(|head| DiagMsg(head, &payload[DIAG_MSG_LEN..]))
            .ok_or(ReplyError::Malformed("truncated inet_diag_msg"))
    }

    /// The attribute of type `kind` (its payload), if the message carries it.
    pub(crate) fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        let mut rest = self.1;
        while rest.len() >= 4 {
            let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
            let found = u16::from_ne_bytes([rest[2], rest[3]]);
            if len < 4 || len > rest.len() {
                return None;
            }
            if found == kind {
                return Some(&rest[4..len]);
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
        None
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

    use netlink_packet_core::Parseable;
    use netlink_packet_sock_diag::inet::InetResponse;
    use netlink_packet_sock_diag::AF_INET;

    use super::super::golden;
    use super::*;
    use crate::state::TcpState;

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
        let (rows, progress) = rows(&golden::both_families(), 1);
        assert_eq!(progress, Ok(Progress::Done));
        let (v4, v6) = (v4_rows(), v6_rows());
        // The kernel walks the listeners, then the established hash, by bucket.
        assert_eq!(rows, [v4[0], v6[0], v4[1], v4[2], v4[3], v6[1]]);
    }

    /// Attributes after the message are found by type; a malformed one ends the walk.
    #[test]
    fn attributes_are_found_by_type() {
        let mut payload = vec![0u8; DIAG_MSG_LEN];
        payload.extend_from_slice(&[8, 0, 5, 0, 1, 2, 3, 4]); // type 5 (TOS), padded
        payload.extend_from_slice(&[12, 0, 7, 0, 9, 0, 0, 0, 8, 0, 0, 0]); // type 7, two u32s
        let msg = DiagMsg::new(&payload).unwrap();
        assert_eq!(msg.attribute(7), Some(&[9, 0, 0, 0, 8, 0, 0, 0][..]));
        assert_eq!(msg.attribute(5), Some(&[1, 2, 3, 4][..]));
        assert_eq!(msg.attribute(4), None);
        let mut bad = vec![0u8; DIAG_MSG_LEN];
        bad.extend_from_slice(&[200, 0, 7, 0, 1]); // longer than what is there
        assert_eq!(DiagMsg::new(&bad).unwrap().attribute(7), None);
    }

    /// Sockets that a descriptor holds carry their inode (as /proc/net/tcp{,6} list it);
    /// TIME_WAIT and request sockets carry 0.
    #[test]
    fn golden_inodes() {
        let reply = golden::both_families();
        let mut inodes = Vec::new();
        parse_reply(&reply, 1, |m| inodes.push((m.family(), m.state(), m.inode()))).unwrap();
        let mut backlogs = Vec::new();
        parse_reply(&reply, 1, |m| backlogs.extend((m.state() == TcpState::Listen as u8).then(|| m.wqueue()))).unwrap();
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
    fn golden_reply_ipv4() {
        let (rows, progress) = rows(&golden::ipv4(), 2);
        assert_eq!(progress, Ok(Progress::Done));
        assert_eq!(rows, v4_rows());
    }

    #[test]
    fn golden_reply_ipv6() {
        let (rows, progress) = rows(&golden::ipv6(), 3);
        assert_eq!(progress, Ok(Progress::Done));
        assert_eq!(rows, v6_rows());
    }

    /// The fast view reads what netlink-packet-sock-diag's typed parser reads.
    #[test]
    fn view_agrees_with_netlink_packet_sock_diag() {
        for (reply, seq) in [(golden::both_families(), 1), (golden::ipv4(), 2), (golden::ipv6(), 3)] {
            let mut seen = 0;
            parse_reply(&reply, seq, |m| {
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
        let (rows, progress) = rows(&golden::ipv4(), 1);
        assert!(rows.is_empty());
        assert_eq!(progress, Ok(Progress::More));
    }

    /// A datagram cut anywhere is an error or a partial walk, never a panic.
    #[test]
    fn truncated_replies_are_errors() {
        let reply = golden::ipv4();
        for cut in 1..reply.len() {
            let (_, progress) = rows(&reply[..cut], 2);
            assert_ne!(progress, Ok(Progress::Done), "cut at {cut}");
        }
        assert_eq!(rows(&reply[..20], 2).1, Err(ReplyError::Malformed("netlink message length out of bounds")));
    }

    #[test]
    fn kernel_errors_carry_the_errno() {
        let eperm = golden::nlmsg(NLMSG_ERROR, 5, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(rows(&eperm, 5).1, Err(ReplyError::Kernel(libc::EPERM)));
        let done_einval = golden::nlmsg(NLMSG_DONE, 5, &(-libc::EINVAL).to_ne_bytes());
        assert_eq!(rows(&done_einval, 5).1, Err(ReplyError::Kernel(libc::EINVAL)));
        let ack = golden::nlmsg(NLMSG_ERROR, 5, &0i32.to_ne_bytes());
        assert_eq!(rows(&ack, 5).1, Ok(Progress::More));
    }

    /// Found by the `sock_diag` fuzz target: `-errno` overflowed on i32::MIN.
    #[test]
    fn the_most_negative_errno_is_an_error_not_a_panic() {
        for kind in [NLMSG_DONE, NLMSG_ERROR] {
            let min = golden::nlmsg(kind, 5, &i32::MIN.to_ne_bytes());
            assert_eq!(rows(&min, 5).1, Err(ReplyError::Kernel(i32::MAX)), "type {kind}");
        }
    }
}
