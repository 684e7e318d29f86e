//! Limits that cap how many connections a machine can open, and the TCP sysctls in force.
//!
//! The descriptor limits come from getrlimit(2); the rest from /proc/sys, whose files hold
//! one number (or, for `ip_local_port_range`, two) and a newline. What is in use against
//! the machine-wide ceilings comes from /proc/sys/fs/file-nr ([`files_open`]) and
//! /proc/meminfo ([`mem_available`]).

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
        let (nofile_soft, nofile_hard) = match nofile() {
            Some((soft, hard)) => (Some(soft), Some(hard)),
            None => (None, None),
        };
        Limits {
            nofile_soft,
            nofile_hard,
            nr_open: sysctl("fs/nr_open").as_deref().and_then(parse_number),
            file_max: sysctl("fs/file-max").as_deref().and_then(parse_number),
            ip_local_port_range: sysctl("net/ipv4/ip_local_port_range").as_deref().and_then(parse_port_range),
            tcp_tw_reuse: sysctl("net/ipv4/tcp_tw_reuse").as_deref().and_then(parse_number),
            tcp_max_tw_buckets: sysctl("net/ipv4/tcp_max_tw_buckets").as_deref().and_then(parse_number),
            somaxconn: sysctl("net/core/somaxconn").as_deref().and_then(parse_number),
            tcp_fin_timeout: sysctl("net/ipv4/tcp_fin_timeout").as_deref().and_then(parse_number),
        }
    }

    /// How many ephemeral ports the range holds, if known.
    pub fn ephemeral_ports(&self) -> Option<u32> {
        self.ip_local_port_range.map(|(lo, hi)| u32::from(hi.saturating_sub(lo)) + 1)
    }
}

/// Open files machine-wide (the first number of /proc/sys/fs/file-nr), against fs.file-max.
pub fn files_open() -> Option<u64> {
    sysctl("fs/file-nr").as_deref().and_then(parse_file_nr)
}

/// MemAvailable of /proc/meminfo, in bytes: what can be allocated without swapping.
pub fn mem_available() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(parse_mem_available)
}

/// /proc/sys/fs/file-nr: allocated, free (always 0 since 2.6), maximum: `"473\t0\t2470938\n"`.
/// The allocated count.
pub fn parse_file_nr(text: &str) -> Option<u64> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(Ok(open)), Some(Ok(_)), Some(Ok(_)), None) => Some(open),
        _ => None,
    }
}

/// The `MemAvailable:` line of /proc/meminfo (`"MemAvailable:   23456789 kB"`), in bytes.
pub fn parse_mem_available(text: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut fields = rest.split_ascii_whitespace();
    match (fields.next().map(str::parse::<u64>), fields.next(), fields.next()) {
        (Some(Ok(kib)), Some("kB"), None) => kib.checked_mul(1024),
        _ => None,
    }
}

/// RLIMIT_NOFILE as (soft, hard).
fn nofile() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `struct rlimit` through a valid pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

/// The text of /proc/sys/`name`, if readable.
fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{name}")).ok()
}

/// A sysctl file holding one number: `"4096\n"`.
pub fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// net.ipv4.ip_local_port_range: two numbers separated by a tab, `"32768\t60999\n"`.
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut ports = text.split_ascii_whitespace().map(str::parse::<u16>);
    match (ports.next(), ports.next(), ports.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_sysctl_text() {
        // As read on Linux 6.18 (x86_64).
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_number::<u64>("1048576\n"), Some(1_048_576));
        assert_eq!(parse_number::<u64>("9223372036854775807\n"), Some(9_223_372_036_854_775_807));
        assert_eq!(parse_number::<u8>("2\n"), Some(2));
    }

    #[test]
    fn recorded_usage_text() {
        // As read on Linux 6.18 (x86_64).
        assert_eq!(parse_file_nr("473\t0\t2470938\n"), Some(473));
        assert_eq!(parse_file_nr("473\t0\n"), None);
        let meminfo = "MemTotal:       24731708 kB\nMemFree:        10282148 kB\nMemAvailable:   23225544 kB\n\
                       Buffers:          273864 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(23_225_544 * 1024));
        assert_eq!(parse_mem_available("MemTotal:       24554540 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable:   many kB\n"), None);
    }

    #[test]
    fn malformed_sysctl_text() {
        assert_eq!(parse_port_range("32768\n"), None);
        assert_eq!(parse_port_range("60999\t32768\n"), None);
        assert_eq!(parse_port_range("1 2 3\n"), None);
        assert_eq!(parse_port_range("1\t70000\n"), None);
        assert_eq!(parse_number::<u8>("300\n"), None);
        assert_eq!(parse_number::<u64>(""), None);
    }

    #[test]
    fn ephemeral_ports_counts_inclusively() {
        let limits = Limits { ip_local_port_range: Some((32768, 60999)), ..Limits::default() };
        assert_eq!(limits.ephemeral_ports(), Some(28232));
    }

    #[test]
    fn live_limits_read() {
        let limits = Limits::read();
        let (soft, hard) = (limits.nofile_soft.unwrap(), limits.nofile_hard.unwrap());
        assert!(soft <= hard);
        assert!(limits.ip_local_port_range.is_some());
        assert!(limits.somaxconn.is_some());
        assert!(limits.file_max.is_some());
        assert!(files_open().unwrap() > 0);
        assert!(mem_available().unwrap() > 0);
    }
}
