//! The netlink sizes and message types that sock_diag requests and replies share
//! (`include/uapi/linux/netlink.h`, `include/uapi/linux/inet_diag.h`).

/// `struct nlmsghdr`.
pub(super) const NLMSG_HDR_LEN: usize = 16;

/// `TCPDIAG_GETSOCK`: the compatibility request type, also the type of its replies.
pub(super) const TCPDIAG_GETSOCK: u16 = 18;
