//! /proc/net/tcp and /proc/net/tcp6, the census fallback when sock_diag is refused: a
//! line parser that reads only the address, port and state columns (and, for the
//! listening sockets of a port, the inode column).
//!
//! Each line is `sl: local rem st ...` with `local` and `rem` as `ADDR:PORT` in hex. The
//! kernel prints each 32-bit word of the (network-order) address as a host-order integer,
//! so on a little-endian machine 127.0.0.1 reads `0100007F`; the port is host order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::parse_error::ParseError;
use crate::state::{StateCounts, TcpState};

use super::filter::Filter;
use super::listening::ListeningSocket;

/// One socket line of /proc/net/tcp{,6}, as much as a census needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    /// The `st` column: the kernel's state number.
    pub(crate) state: u8,
    /// `local_address`.
    pub(crate) local: SocketAddr,
    /// `rem_address`.
    pub(crate) remote: SocketAddr,
}

/// Count the sockets of a /proc/net/tcp or /proc/net/tcp6 text that match `filter`, by
/// state, into `counts`. The header line is skipped; both files' texts may be given one
/// after the other.
pub fn parse_proc_net_tcp(text: &str, filter: &Filter, counts: &mut StateCounts) -> Result<(), ParseError> {
    for line in text.lines() {
        if let Some(entry) = parse_line(line.as_bytes())? {
            if filter.matches(entry.local, entry.remote) {
                if let Some(state) = TcpState::from_kernel(entry.state) {
                    counts.add(state);
                }
            }
        }
    }
    Ok(())
}

/// The listening sockets on `port` in a /proc/net/tcp or /proc/net/tcp6 text, with their
/// inodes (the tenth column, decimal).
pub fn parse_listening(text: &str, port: u16) -> Result<Vec<ListeningSocket>, ParseError> {
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(entry) = parse_line(line.as_bytes())? else { continue };
        if entry.local.port() != port || TcpState::from_kernel(entry.state) != Some(TcpState::Listen) {
            continue;
        }
        let inode = line
            .split_ascii_whitespace()
            .nth(9)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| ParseError::new("/proc/net/tcp line without an inode", line))?;
        found.push(ListeningSocket { local: entry.local, inode, backlog: None });
    }
    Ok(found)
}

/// Parse one line; `None` for the header and blank lines.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<ProcEntry>, ParseError> {
    let mut fields = line.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty());
    let Some(slot) = fields.next() else {
        return Ok(None);
    };
    if slot == b"sl" {
        return Ok(None);
    }
    let bad = |what: &'static str| ParseError::new(what, String::from_utf8_lossy(line).into_owned());
    let local = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a local address"))?;
    let remote = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a remote address"))?;
    let state = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a state"))?;
    let local = socket_addr(local).ok_or_else(|| bad("bad /proc/net/tcp local address"))?;
    let remote = socket_addr(remote).ok_or_else(|| bad("bad /proc/net/tcp remote address"))?;
    let state = match state {
        [_, _] => hex(state).ok_or_else(|| bad("bad /proc/net/tcp state"))? as u8,
        _ => return Err(bad("bad /proc/net/tcp state")),
    };
    Ok(Some(ProcEntry { state, local, remote }))
}

/// `0100007F:1F90` → (127.0.0.1, 8080); 32 address digits for IPv6.
fn socket_addr(field: &[u8]) -> Option<SocketAddr> {
    let colon = field.iter().position(|&b| b == b':')?;
    let (addr, port) = (&field[..colon], &field[colon + 1..]);
    if port.len() != 4 {
        return None;
    }
    let port = hex(port)? as u16;
    let addr = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex(addr)?.to_ne_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (word, digits) in octets.chunks_exact_mut(4).zip(addr.chunks_exact(8)) {
                word.copy_from_slice(&hex(digits)?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(addr, port))
}

/// Up to 8 hex digits.
fn hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'A'..=b'F' => d - b'A' + 10,
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

#[cfg(test)]
mod tests {
    use procfs::net::TcpNetEntries;
    use procfs::{ExplicitSystemInfo, FromBufReadSI};

    use super::*;

    // Recorded on Linux 6.18 (x86_64) by `census::tests::record_golden_replies`: the lines
    // of listeners on 127.0.0.1:37887 (with TCP_DEFER_ACCEPT) and [::1]:37887. IPv4:
    // the listener, two clients, the server ends of one connection (its byte unread), of
    // one the server closed first (TIME_WAIT) and of one whose client sent nothing
    // (SYN_RECV). IPv6: the listener and one connection.
    const TCP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proc_net_tcp.txt"));
    const TCP6: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proc_net_tcp6.txt"));

    fn census(text: &str, filter: Filter) -> Vec<(TcpState, u64)> {
        let mut counts = StateCounts::default();
        parse_proc_net_tcp(text, &filter, &mut counts).unwrap();
        counts.iter().filter(|&(_, n)| n > 0).collect()
    }

    #[test]
    fn recorded_ipv4_text() {
        use TcpState::*;
        assert_eq!(census(TCP, Filter::server(37887)), [(Established, 1), (SynRecv, 1), (TimeWait, 1), (Listen, 1)]);
        assert_eq!(census(TCP, Filter::client(37887)), [(Established, 2)]);
        let peer = Filter { remote_port: Some(37887), local_port: Some(51450), ..Filter::default() };
        assert_eq!(census(TCP, peer), [(Established, 1)]);
        let lo = Filter { local_addr: Some(Ipv4Addr::LOCALHOST.into()), ..Filter::default() };
        assert_eq!(census(TCP, lo).iter().map(|&(_, n)| n).sum::<u64>(), 6);
        let elsewhere = Filter { remote_addr: Some(Ipv4Addr::new(127, 0, 0, 2).into()), ..Filter::default() };
        assert_eq!(census(TCP, elsewhere), []);
    }

    #[test]
    fn recorded_ipv6_text() {
        use TcpState::*;
        assert_eq!(census(TCP6, Filter::server(37887)), [(Established, 1), (Listen, 1)]);
        assert_eq!(census(TCP6, Filter::client(37887)), [(Established, 1)]);
        let v6 = Filter { local_addr: Some(Ipv6Addr::LOCALHOST.into()), ..Filter::default() };
        assert_eq!(census(TCP6, v6).iter().map(|&(_, n)| n).sum::<u64>(), 3);
        // An IPv4 address matches only IPv4-mapped addresses in tcp6.
        let v4 = Filter { local_addr: Some(Ipv4Addr::LOCALHOST.into()), ..Filter::default() };
        assert_eq!(census(TCP6, v4), []);
    }

    #[test]
    fn recorded_listeners_and_inodes() {
        let v4 = parse_listening(TCP, 37887).unwrap();
        let at = |addr: &str, inode| ListeningSocket { local: addr.parse().unwrap(), inode, backlog: None };
        assert_eq!(v4, [at("127.0.0.1:37887", 1_801_539)]);
        assert_eq!(parse_listening(TCP6, 37887).unwrap(), [at("[::1]:37887", 1_801_545)]);
        // the clients' ends are on other ports; nothing listens on theirs
        assert!(parse_listening(TCP, 51450).unwrap().is_empty());
        let cut = "   0: 0100007F:93FF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0";
        assert!(parse_listening(cut, 37887).is_err());
    }

    #[test]
    fn both_files_concatenated() {
        let text = format!("{TCP}{TCP6}");
        assert_eq!(census(&text, Filter::default()).iter().map(|&(_, n)| n).sum::<u64>(), 9);
    }

    /// Every recorded line reads as procfs-core reads it.
    #[test]
    fn agrees_with_procfs() {
        let info = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        for text in [TCP, TCP6] {
            let theirs = TcpNetEntries::from_buf_read(text.as_bytes(), &info).unwrap().0;
            let ours: Vec<ProcEntry> = text.lines().filter_map(|l| parse_line(l.as_bytes()).unwrap()).collect();
            assert_eq!(ours.len(), theirs.len());
            for (o, t) in ours.iter().zip(&theirs) {
                assert_eq!((o.local.ip(), o.local.port()), (t.local_address.ip(), t.local_address.port()));
                assert_eq!((o.remote.ip(), o.remote.port()), (t.remote_address.ip(), t.remote_address.port()));
                assert_eq!(o.state, t.state.to_u8());
            }
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        for line in [
            "   0: 0100007F:ACFF",
            "   0: 0100007F:ACFF 00000000:0000",
            "   0: 0100007G:ACFF 00000000:0000 0A",
            "   0: 0100007F:ACF 00000000:0000 0A",
            "   0: 0100007F:ACFF 000000:0000 0A",
            "   0: 0100007F:ACFF 00000000:0000 A",
        ] {
            assert!(parse_line(line.as_bytes()).is_err(), "{line}");
        }
        assert_eq!(parse_line(b"").unwrap(), None);
        assert_eq!(parse_line(b"  sl  local_address").unwrap(), None);
    }
}
