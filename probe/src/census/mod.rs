//! Socket census: count TCP sockets by state, filtered by port and address.
//!
//! A [`Prober`] holds a NETLINK_SOCK_DIAG socket and dumps the TCP sockets of its network
//! namespace, IPv4 and IPv6, every state included (TIME_WAIT sockets and SYN_RECV request
//! sockets too): in one walk of the kernel's socket tables where the kernel takes the
//! request for it, else one walk per family. The kernel does the filtering: the [`Filter`]
//! travels in the request (ports in the socket id, everything as `inet_diag` bytecode), so a
//! census of 20 sockets among a million moves 20 messages, not a million. Replies are walked
//! in place, reading only family, state, ports and addresses (module `sockdiag`; the socket
//! I/O is in `netlink`).
//!
//! When netlink is refused (no permission, no sock_diag support), the prober falls back to
//! /proc/net/tcp and /proc/net/tcp6 ([`parse_proc_net_tcp`]) and says so in
//! [`Prober::warning`]; [`Prober::proc_net`] asks for that backend directly.
//!
//! [`Prober::listening`] finds the listening sockets of a port with their inodes (a dump of
//! the LISTEN state alone, or [`parse_listening`] on the fallback), which is how
//! [`crate::process`] finds the processes behind a port.
//!
//! [`Prober::memory`] sums the kernel memory of the matching sockets (sock_diag's
//! `INET_DIAG_SKMEMINFO`; module `memory`).
//!
//! Files: `filter` (which sockets), `prober` (the [`Prober`] and its choice of backend),
//! `tally` (what a census counts, and its result), `listening` (listening sockets),
//! `error`; `sockdiag` (the sock_diag wire format, no I/O) and `netlink` (its socket);
//! `procnet` (the /proc/net/tcp parsers, no I/O) and `fallback` (reading those files).

mod error;
mod fallback;
mod filter;
mod listening;
#[cfg(test)]
mod live;
mod memory;
mod netlink;
mod prober;
mod procnet;
mod sockdiag;
mod tally;

pub use self::error::CensusError;
pub use self::filter::Filter;
pub use self::listening::ListeningSocket;
pub use self::memory::SocketMemory;
#[doc(hidden)]
pub use self::prober::census_of_datagram;
pub use self::prober::{Backend, Prober};
pub use self::procnet::{parse_listening, parse_proc_net_tcp};
pub use self::tally::{Census, PeerCount};
