//! /proc/net/sockstat: socket totals kept by the kernel.
//!
//! STUB: interface fixed, implementation pending.

/// The TCP line of /proc/net/sockstat and the total socket count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SockStat {
    /// `sockets: used N`: every socket of the namespace.
    pub sockets_used: u64,
    /// `TCP: inuse`: TCP sockets held by a process.
    pub tcp_inuse: u64,
    /// `TCP: orphan`: closed by their process, still shutting down.
    pub tcp_orphan: u64,
    /// `TCP: tw`: TIME_WAIT sockets.
    pub tcp_tw: u64,
    /// `TCP: alloc`: TCP sockets allocated.
    pub tcp_alloc: u64,
    /// `TCP: mem`: pages of memory used by TCP buffers.
    pub tcp_mem_pages: u64,
}

impl SockStat {
    /// Read /proc/net/sockstat.
    pub fn read() -> std::io::Result<SockStat> {
        Ok(SockStat::default())
    }
}
