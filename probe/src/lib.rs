//! The probe: what the kernel says about TCP sockets and the limits around them.
//!
//! - [`state`]: TCP states and [`StateCounts`], a census by state.
//! - [`census`]: counts sockets by state through sock_diag (netlink), filtered by the
//!   kernel on ports and addresses, with a fallback to /proc/net/tcp{,6}.
//! - [`counters`]: /proc/net/snmp `Tcp` and /proc/net/netstat `TcpExt` counters, and deltas.
//! - [`sockstat`]: socket totals from /proc/net/sockstat.
//! - [`limits`]: descriptor limits and the TCP sysctls in force.
//! - [`process`]: the processes listening on a port, their descriptors and RLIMIT_NOFILE.
//!
//! Parsers are pure functions over bytes or text, tested with recorded input; the I/O
//! that feeds them lives beside them. The probe knows nothing of the harness.

pub mod census;
pub mod counters;
pub mod limits;
pub mod process;
pub mod sockstat;
pub mod state;

pub use census::{Backend, Census, CensusError, Filter, ListeningSocket, PeerCount, Prober};
pub use counters::KernelCounters;
pub use limits::Limits;
pub use process::{listeners_for, listeners_of, Listeners, ProcessFds};
pub use sockstat::SockStat;
pub use state::{StateCounts, TcpState};

/// A /proc file whose text did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {found:?}")]
pub struct ParseError {
    /// What was expected.
    pub what: &'static str,
    /// The offending text (a line, or a value).
    pub found: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, found: impl Into<String>) -> ParseError {
        ParseError { what, found: found.into() }
    }
}

impl From<ParseError> for std::io::Error {
    fn from(e: ParseError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}
