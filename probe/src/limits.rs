//! Limits that cap how many connections a machine can open, and the TCP sysctls in force.
//!
//! STUB: interface fixed, implementation pending.

/// Descriptor limits of this process and the TCP sysctls of its network namespace.
/// A value that could not be read is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// RLIMIT_NOFILE soft limit of this process.
    pub nofile_soft: Option<u64>,
    /// RLIMIT_NOFILE hard limit of this process.
    pub nofile_hard: Option<u64>,
    /// fs.nr_open: the ceiling for any RLIMIT_NOFILE.
    pub nr_open: Option<u64>,
    /// fs.file-max: open files, machine-wide.
    pub file_max: Option<u64>,
    /// net.ipv4.ip_local_port_range, inclusive.
    pub ip_local_port_range: Option<(u16, u16)>,
    /// net.ipv4.tcp_tw_reuse (0, 1, or 2 = loopback only).
    pub tcp_tw_reuse: Option<u8>,
    /// net.ipv4.tcp_max_tw_buckets.
    pub tcp_max_tw_buckets: Option<u64>,
    /// net.core.somaxconn.
    pub somaxconn: Option<u64>,
    /// net.ipv4.tcp_fin_timeout, seconds.
    pub tcp_fin_timeout: Option<u64>,
}

impl Limits {
    /// Read this process's limits and the sysctls of its network namespace.
    pub fn read() -> Limits {
        Limits::default()
    }

    /// How many ephemeral ports the range holds, if known.
    pub fn ephemeral_ports(&self) -> Option<u32> {
        self.ip_local_port_range.map(|(lo, hi)| u32::from(hi.saturating_sub(lo)) + 1)
    }
}
