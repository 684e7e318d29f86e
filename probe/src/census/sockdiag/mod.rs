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
//!
//! - `request`: the dump requests and the filter's bytecode.
//! - `reply`: the walk over a received datagram, and the view of one `inet_diag_msg`.
//! - `layout`: the sizes and message types both directions share.

#[cfg(test)]
mod golden;
mod layout;
mod reply;
mod request;

pub(crate) use self::reply::{parse_reply, DiagMsg, Progress, ReplyError};
pub(crate) use self::request::{dump_request_ext, Dump, ALL_STATES, EXT_SKMEMINFO, INET_DIAG_SKMEMINFO, LISTEN_ONLY};
