//! The kernel memory of a set of sockets: [`SocketMemory`], summed from the
//! `INET_DIAG_SKMEMINFO` attribute sock_diag adds to each full socket's reply when asked
//! (`idiag_ext`). TIME_WAIT and request sockets are mini sockets without it: they are
//! left out. The attribute holds the `SK_MEMINFO_*` u32s: rmem_alloc, rcvbuf,
//! wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops.

use super::sockdiag::DiagMsg;

/// The buffer memory the kernel charges to sockets, and how many sockets of each family
/// carried it (their `struct tcp_sock` objects are not in it: see
/// [`crate::slabinfo`] for their size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketMemory {
    /// Full IPv4 sockets (with a memory attribute).
    pub sockets_v4: u64,
    /// Full IPv6 sockets (IPv4-mapped included).
    pub sockets_v6: u64,
    /// Receive queue + send queue + forward allocation + option memory, summed (bytes):
    /// the memory the kernel's TCP accounting charges them.
    pub buffer_bytes: u64,
}

impl SocketMemory {
    /// Add one socket's `INET_DIAG_SKMEMINFO` payload; false (nothing added) when it is
    /// too short to hold the fields read.
    pub(crate) fn add(&mut self, ipv6: bool, meminfo: &[u8]) -> bool {
        let field =
            |i: usize| meminfo.get(i * 4..i * 4 + 4).map(|b| u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
        let (Some(rmem), Some(fwd), Some(queued), Some(opt)) = (field(0), field(4), field(5), field(6)) else {
            return false;
        };
        // fwd_alloc is an int in the kernel: a negative one (never seen) counts as none.
        let fwd = if fwd > i32::MAX as u64 { 0 } else { fwd };
        self.buffer_bytes = self.buffer_bytes.saturating_add(rmem + fwd + queued + opt);
        if ipv6 {
            self.sockets_v6 += 1;
        } else {
            self.sockets_v4 += 1;
        }
        true
    }

    /// Add a dumped socket: its memory attribute, if it carries one.
    pub(crate) fn visit(&mut self, msg: DiagMsg<'_>) {
        if let Some(meminfo) = msg.attribute(super::sockdiag::INET_DIAG_SKMEMINFO) {
            self.add(msg.family() == netlink_packet_sock_diag::AF_INET6, meminfo);
        }
    }

    /// Full sockets counted.
    pub fn sockets(&self) -> u64 {
        self.sockets_v4 + self.sockets_v6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meminfo(values: [u32; 9]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn buffers_are_summed_per_family() {
        let mut m = SocketMemory::default();
        assert!(m.add(false, &meminfo([100, 131072, 7, 16384, 4000, 20, 0, 0, 0])));
        assert!(m.add(true, &meminfo([0, 131072, 0, 16384, 0, 0, 40, 0, 0])));
        assert!(!m.add(true, &[0; 12]), "too short");
        assert_eq!(m, SocketMemory { sockets_v4: 1, sockets_v6: 1, buffer_bytes: 100 + 4000 + 20 + 40 });
        assert!(m.add(false, &meminfo([0, 0, 0, 0, u32::MAX, 0, 0, 0, 0])), "a negative fwd_alloc");
        assert_eq!((m.sockets(), m.buffer_bytes), (3, 4160));
    }
}
