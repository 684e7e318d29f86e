//! /proc/net/tcp and /proc/net/tcp6, the census fallback when sock_diag is refused: a
//! line parser that reads only the address, port and state columns.
//!
//! Each line is `sl: local rem st ...` with `local` and `rem` as `ADDR:PORT` in hex. The
//! kernel prints each 32-bit word of the (network-order) address as a host-order integer,
//! so on a little-endian machine 127.0.0.1 reads `0100007F`; the port is host order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::state::{StateCounts, TcpState};
use crate::ParseError;

use super::Filter;

/// One socket line of /proc/net/tcp{,6}, as much as a census needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    /// The `st` column: the kernel's state number.
    pub(crate) state: u8,
    pub(crate) local_addr: IpAddr,
    pub(crate) local_port: u16,
    pub(crate) remote_addr: IpAddr,
    pub(crate) remote_port: u16,
}

/// Count the sockets of a /proc/net/tcp or /proc/net/tcp6 text that match `filter`, by
/// state, into `counts`. The header line is skipped; both files' texts may be given one
/// after the other.
pub fn parse_proc_net_tcp(text: &str, filter: &Filter, counts: &mut StateCounts) -> Result<(), ParseError> {
    for line in text.lines() {
        if let Some(entry) = parse_line(line.as_bytes())? {
            if filter.matches(entry.local_addr, entry.local_port, entry.remote_addr, entry.remote_port) {
                if let Some(state) = TcpState::from_kernel(entry.state) {
                    counts.add(state);
                }
            }
        }
    }
    Ok(())
}

/// Parse one line; `None` for the header and blank lines.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<ProcEntry>, ParseError> {
    let mut fields = line.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty());
    let Some(slot) = fields.next() else { return Ok(None) };
    if slot == b"sl" {
        return Ok(None);
    }
    let bad = |what: &'static str| ParseError::new(what, String::from_utf8_lossy(line).into_owned());
    let local = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a local address"))?;
    let remote = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a remote address"))?;
    let state = fields.next().ok_or_else(|| bad("/proc/net/tcp line without a state"))?;
    let (local_addr, local_port) = addr_port(local).ok_or_else(|| bad("bad /proc/net/tcp local address"))?;
    let (remote_addr, remote_port) = addr_port(remote).ok_or_else(|| bad("bad /proc/net/tcp remote address"))?;
    let state = match state {
        [_, _] => hex(state).ok_or_else(|| bad("bad /proc/net/tcp state"))? as u8,
        _ => return Err(bad("bad /proc/net/tcp state")),
    };
    Ok(Some(ProcEntry { state, local_addr, local_port, remote_addr, remote_port }))
}

/// `0100007F:1F90` → (127.0.0.1, 8080); 32 address digits for IPv6.
fn addr_port(field: &[u8]) -> Option<(IpAddr, u16)> {
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
    Some((addr, port))
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
