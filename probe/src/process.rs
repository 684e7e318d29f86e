//! The processes behind a listening port, and their descriptors: which processes hold
//! the listening sockets of a port (several with SO_REUSEPORT, or a pre-forking server
//! whose children inherited the socket), how many descriptors each has open, and its
//! RLIMIT_NOFILE. A server that accepts a connection spends a descriptor on it, so these
//! numbers bound how many connections it can still take.
//!
//! The listening sockets and their inodes come from [`Prober::listening`] (sock_diag,
//! or /proc/net/tcp{,6}); the processes holding them from the `socket:[INODE]` links
//! under /proc/PID/fd; the counts from /proc/PID/fd and /proc/PID/limits. Reading another
//! user's /proc/PID/fd takes root (or the same user): a listening socket whose process
//! could not be read is left in [`Listeners::unowned`].
//!
//! The /proc texts are parsed by pure functions ([`parse_nofile_limits`],
//! [`parse_socket_link`]) tested with recorded text; the directory walks are apart.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::census::{ListeningSocket, Prober};
use crate::parse_error::ParseError;

/// One process's descriptors: how many it holds and how many it may hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessFds {
    /// Process id.
    pub pid: u32,
    /// Command name (/proc/PID/comm, at most 15 bytes).
    pub name: String,
    /// Descriptors open now (entries of /proc/PID/fd).
    pub open: u64,
    /// RLIMIT_NOFILE soft limit: the descriptors it may hold (`u64::MAX`: unlimited).
    pub limit_soft: u64,
    /// RLIMIT_NOFILE hard limit: how far it may raise the soft one (`u64::MAX`: unlimited).
    pub limit_hard: u64,
}

impl ProcessFds {
    /// Read the name, descriptor count and limits of `pid` (cheap enough to call once per
    /// phase: the count is one stat(2) on Linux 6.2 and later).
    pub fn read(pid: u32) -> io::Result<ProcessFds> {
        let dir = Path::new("/proc").join(pid.to_string());
        let name = std::fs::read_to_string(dir.join("comm"))?.trim_end_matches('\n').to_string();
        let open = count_fds(&dir.join("fd"))?;
        let (limit_soft, limit_hard) = parse_nofile_limits(&std::fs::read_to_string(dir.join("limits"))?)?;
        Ok(ProcessFds { pid, name, open, limit_soft, limit_hard })
    }

    /// Descriptors it may still open before its soft limit: 0 at or past it.
    pub fn headroom(&self) -> u64 {
        self.limit_soft.saturating_sub(self.open)
    }
}

/// The listening sockets that serve an address or port, and the processes holding them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listeners {
    /// The listening sockets found.
    pub sockets: Vec<ListeningSocket>,
    /// The processes holding at least one of them, by pid.
    pub processes: Vec<ProcessFds>,
    /// Listening sockets that no readable process holds: another user's process read
    /// without root, or a process of another PID namespace.
    pub unowned: Vec<ListeningSocket>,
}

/// The processes listening on `port` (any address, IPv4 and IPv6), by pid.
pub fn listeners_of(port: u16) -> io::Result<Vec<ProcessFds>> {
    let sockets = Prober::new().listening(port).map_err(io::Error::other)?;
    Ok(owners(sockets)?.processes)
}

/// The listening sockets that accept connections to `target` (its address or a wildcard,
/// see [`ListeningSocket::accepts`]) and the processes holding them.
pub fn listeners_for(target: SocketAddr) -> io::Result<Listeners> {
    let mut sockets = Prober::new().listening(target.port()).map_err(io::Error::other)?;
    sockets.retain(|s| s.accepts(target));
    owners(sockets)
}

/// Find the processes holding `sockets` by walking /proc/*/fd.
fn owners(sockets: Vec<ListeningSocket>) -> io::Result<Listeners> {
    if sockets.is_empty() {
        return Ok(Listeners::default());
    }
    let wanted: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let mut held = HashSet::new();
    let mut processes = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process that exits or cannot be read (another user's) is skipped.
        let Ok(found) = sockets_held(pid, &wanted) else { continue };
        if found.is_empty() {
            continue;
        }
        if let Ok(fds) = ProcessFds::read(pid) {
            held.extend(found);
            processes.insert(pid, fds);
        }
    }
    let unowned = sockets.iter().filter(|s| !held.contains(&s.inode)).copied().collect();
    Ok(Listeners { sockets, processes: processes.into_values().collect(), unowned })
}

/// Which of the `wanted` socket inodes process `pid` holds.
fn sockets_held(pid: u32, wanted: &HashSet<u64>) -> io::Result<Vec<u64>> {
    let dir = Path::new("/proc").join(pid.to_string()).join("fd");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let Ok(link) = std::fs::read_link(entry?.path()) else { continue };
        if let Some(inode) = parse_socket_link(link.as_os_str().as_bytes()) {
            if wanted.contains(&inode) && !found.contains(&inode) {
                found.push(inode);
            }
        }
    }
    Ok(found)
}

/// Descriptors open in a /proc/PID/fd directory: its size as stat(2) reports it (the
/// count, since Linux 6.2), else its entries counted (the directory's own descriptor
/// left out when it is this process's).
fn count_fds(dir: &Path) -> io::Result<u64> {
    let size = std::fs::metadata(dir)?.len();
    if size > 0 {
        return Ok(size);
    }
    let entries = std::fs::read_dir(dir)?.count() as u64;
    let own = dir.canonicalize().ok() == Path::new("/proc/self/fd").canonicalize().ok();
    Ok(if own { entries.saturating_sub(1) } else { entries })
}

/// The `INODE` of a /proc/PID/fd link `socket:[INODE]`; `None` for other descriptors.
pub fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// RLIMIT_NOFILE (soft, hard) from the text of /proc/PID/limits: the `Max open files`
/// line, `unlimited` read as `u64::MAX`.
pub fn parse_nofile_limits(text: &str) -> Result<(u64, u64), ParseError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| ParseError::new("/proc/PID/limits without a `Max open files` line", text))?;
    let value = |v: Option<&str>| match v {
        Some("unlimited") => Some(u64::MAX),
        Some(n) => n.parse().ok(),
        None => None,
    };
    let mut fields = line.split_ascii_whitespace();
    match (value(fields.next()), value(fields.next())) {
        (Some(soft), Some(hard)) => Ok((soft, hard)),
        _ => Err(ParseError::new("a `Max open files` line with a soft and a hard limit", line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/limits of mosquitto 2.0.11, started from a shell with `ulimit -n 20000`,
    /// as read on Linux 6.18 (x86_64).
    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96551                96551                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96551                96551                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
";

    #[test]
    fn recorded_limits_text() {
        assert_eq!(parse_nofile_limits(LIMITS), Ok((20_000, 20_000)));
        let unlimited = LIMITS.replace("20000                20000", "1024                 unlimited");
        assert_eq!(parse_nofile_limits(&unlimited), Ok((1024, u64::MAX)));
    }

    #[test]
    fn malformed_limits_text() {
        assert!(parse_nofile_limits("").is_err());
        assert!(parse_nofile_limits(&LIMITS.replace("Max open files", "Max open filez")).is_err());
        assert!(parse_nofile_limits("Max open files            20000\n").is_err());
        assert!(parse_nofile_limits("Max open files            many                 20000    files\n").is_err());
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[1801539]"), Some(1_801_539));
        assert_eq!(parse_socket_link(b"pipe:[1801539]"), None);
        assert_eq!(parse_socket_link(b"/dev/null"), None);
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12"), None);
    }

    #[test]
    fn headroom_stops_at_zero() {
        let fds = |open| ProcessFds { pid: 1, name: "x".into(), open, limit_soft: 1024, limit_hard: 4096 };
        assert_eq!(fds(1000).headroom(), 24);
        assert_eq!(fds(2000).headroom(), 0);
    }
}
