//! The probe: what the kernel says about TCP sockets and the limits around them.
//!
//! - [`state`]: TCP states and [`StateCounts`], a census by state.
//! - [`census`]: counts sockets by state through sock_diag (netlink), filtered by the
//!   kernel on ports and addresses, with a fallback to /proc/net/tcp{,6}.
//! - [`counters`]: /proc/net/snmp `Tcp` and /proc/net/netstat `TcpExt` counters, and deltas.
//! - [`sockstat`]: socket totals from /proc/net/sockstat.
//! - [`limits`]: descriptor limits and the TCP sysctls in force.
//! - [`process`]: the processes listening on a port, their descriptors and RLIMIT_NOFILE.
//! - [`slabinfo`]: kernel object sizes by slab cache (a socket's own memory).
//! - [`usage`]: a process's CPU time and memory (RSS, PSS), and the CPUs this one may use.
//!
//! Parsers are pure functions over bytes or text, tested with recorded input; the I/O
//! that feeds them lives beside them. The probe knows nothing of the harness.

pub mod census;
pub mod counters;
pub mod limits;
mod parse_error;
pub mod process;
pub mod slabinfo;
pub mod sockstat;
pub mod state;
pub mod usage;

pub use census::{Backend, Census, CensusError, Filter, ListeningSocket, PeerCount, Prober, SocketMemory};
pub use counters::KernelCounters;
pub use limits::Limits;
pub use parse_error::ParseError;
pub use process::{listeners_for, listeners_of, Listeners, ProcessFds};
pub use sockstat::SockStat;
pub use state::{StateCounts, TcpState};
pub use usage::{cpus_available, ProcessUsage};
