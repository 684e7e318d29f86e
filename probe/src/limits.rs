//! Limits that cap how many connections a machine can open, and the TCP sysctls in force.
//!
//! The descriptor limits come from getrlimit(2) ([`nofile`], through the `rlimit` crate, which
//! the harness also raises them with); the rest from /proc/sys, whose files hold
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
            Ok((soft, hard)) => (Some(soft), Some(hard)),
            Err(_) => (None, None),
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

/// What this process may still allocate, in bytes: MemAvailable of /proc/meminfo, or
/// less when its memory cgroup's limit minus its use is lower (a container's, a pod's).
pub fn mem_available() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(parse_mem_available);
    match (machine, cgroup_memory_headroom()) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// The least headroom (limit minus use) of this process's memory cgroup and its
/// ancestors, cgroup v2 or v1; `None` when no limit applies or none can be read.
pub fn cgroup_memory_headroom() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (version, path) = parse_memory_cgroup(&text)?;
    let (root, limit_file, usage_file) = match version {
        CgroupVersion::V2 => ("/sys/fs/cgroup", "memory.max", "memory.current"),
        CgroupVersion::V1 => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
    };
    let mut dir = std::path::PathBuf::from(format!("{root}{}", path.trim_end_matches('/')));
    let mut least: Option<u64> = None;
    loop {
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
        if let (Some(limit), Some(usage)) = (read(limit_file), read(usage_file)) {
            if let Some(headroom) = headroom(&limit, &usage) {
                least = Some(least.map_or(headroom, |l| l.min(headroom)));
            }
        }
        if dir.as_os_str().len() <= root.len() || !dir.pop() {
            return least;
        }
    }
}

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// /proc/self/cgroup: the memory controller's cgroup path. A v1 `N:memory:/path` line
/// wins over the v2 `0::/path` line (on a hybrid machine v2 has no memory controller).
pub fn parse_memory_cgroup(text: &str) -> Option<(CgroupVersion, String)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if controllers.split(',').any(|c| c == "memory") {
            return Some((CgroupVersion::V1, path.to_string()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((CgroupVersion::V2, path.to_string()));
        }
    }
    v2
}

/// A cgroup's limit minus its use; `None` without a limit (`max`, or v1's near-2^63).
pub fn headroom(limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok().filter(|l| *l < 1 << 62)?;
    let usage: u64 = usage.trim().parse().ok()?;
    Some(limit.saturating_sub(usage))
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

/// This process's RLIMIT_NOFILE as (soft, hard); `u64::MAX` is unlimited.
pub fn nofile() -> std::io::Result<(u64, u64)> {
    rlimit::Resource::NOFILE.get()
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
    fn memory_cgroups_parse_in_both_versions() {
        // As read here (a hybrid v1/v2 machine) and in a v2 container.
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/562ecd\n1:cpu:/\n0::/\n";
        assert_eq!(parse_memory_cgroup(hybrid), Some((CgroupVersion::V1, "/process_api/562ecd".to_string())));
        let v2 = "0::/kubepods.slice/pod1234/cri-abc\n";
        assert_eq!(parse_memory_cgroup(v2), Some((CgroupVersion::V2, "/kubepods.slice/pod1234/cri-abc".to_string())));
        assert_eq!(parse_memory_cgroup("2:cpu,cpuacct:/\n"), None);
        assert_eq!(headroom("536870912\n", "136870912\n"), Some(400_000_000));
        assert_eq!(headroom("max\n", "1000\n"), None);
        assert_eq!(headroom("9223372036854771712\n", "1000\n"), None, "v1's 'no limit'");
        assert_eq!(headroom("1000\n", "2000\n"), Some(0));
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
