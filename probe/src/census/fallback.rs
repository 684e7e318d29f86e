//! The /proc/net/tcp{,6} backend's I/O: the files a census falls back to when sock_diag is
//! refused, streamed line by line through the parsers of `procnet`.

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use super::error::CensusError;
use super::filter::{Filter, Side};
use super::listening::ListeningSocket;
use super::procnet::{self, parse_listening};
use super::tally::Tally;

/// The /proc files of the fallback, IPv4 first.
pub(super) const PROC_NET_TCP: &str = "/proc/net/tcp";
pub(super) const PROC_NET_TCP6: &str = "/proc/net/tcp6";

/// Stream /proc/net/tcp and /proc/net/tcp6 line by line (a missing tcp6 means no IPv6).
pub(super) fn proc_net_census(filter: &Filter, tally: &mut Tally) -> Result<(), CensusError> {
    let paths: &[&str] = if filter.wants_ipv4() { &[PROC_NET_TCP, PROC_NET_TCP6] } else { &[PROC_NET_TCP6] };
    let mut line = Vec::with_capacity(256);
    for &path in paths {
        let proc_err = |source| CensusError::Proc { path: path.to_owned(), source };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == PROC_NET_TCP6 => continue,
            Err(e) => return Err(proc_err(e)),
        };
        let mut reader = BufReader::with_capacity(256 << 10, file);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(proc_err)? == 0 {
                break;
            }
            let entry = procnet::parse_line(&line).map_err(|e| CensusError::Parse(e.to_string()))?;
            let Some(e) = entry else { continue };
            if filter.matches(e.local, e.remote) {
                tally.add(e.state, |side| match side {
                    Side::Local => e.local.ip(),
                    Side::Remote => e.remote.ip(),
                });
            }
        }
    }
    Ok(())
}

/// The listening sockets on `port` in /proc/net/tcp and /proc/net/tcp6 (a missing tcp6
/// means no IPv6).
pub(super) fn listening(port: u16) -> Result<Vec<ListeningSocket>, CensusError> {
    let mut found = Vec::new();
    for path in [PROC_NET_TCP, PROC_NET_TCP6] {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == PROC_NET_TCP6 => continue,
            Err(source) => return Err(CensusError::Proc { path: path.to_owned(), source }),
        };
        found.extend(parse_listening(&text, port).map_err(|e| CensusError::Parse(e.to_string()))?);
    }
    Ok(found)
}
