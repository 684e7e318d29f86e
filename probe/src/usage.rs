//! What a process spends: its CPU time (`utime + stime` of /proc/PID/stat) and its
//! memory (RSS from /proc/PID/stat; PSS from /proc/PID/smaps_rollup, where the kernel
//! has it and it can be read). The texts are parsed by pure functions
//! ([`parse_stat_cpu_rss`], [`parse_rollup_pss`]) tested with recorded text.

use std::io;

use crate::parse_error::ParseError;

/// One reading of a process's CPU time and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUsage {
    pub pid: u32,
    /// User plus system CPU time so far, in µs (the process's threads, not its children).
    pub cpu_us: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Proportional set size (shared pages divided among their users), bytes; `None`
    /// when /proc/PID/smaps_rollup cannot be read.
    pub pss_bytes: Option<u64>,
}

impl ProcessUsage {
    /// Read `pid`'s CPU time, RSS and (best effort) PSS.
    pub fn read(pid: u32) -> io::Result<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (ticks, rss_pages) = parse_stat_cpu_rss(&stat)?;
        let pss_bytes =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok().and_then(|t| parse_rollup_pss(&t));
        Ok(ProcessUsage {
            pid,
            cpu_us: ticks.saturating_mul(1_000_000) / clock_ticks_per_s(),
            rss_bytes: rss_pages.saturating_mul(page_size()),
            pss_bytes,
        })
    }
}

/// The CPUs this process may run on (sched_getaffinity), at least 1.
pub fn cpus_available() -> u32 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only writes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as u32).max(1);
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// `utime + stime` (clock ticks) and `rss` (pages) from a /proc/PID/stat line. The
/// command name (field 2) may hold spaces and parentheses: fields are counted after the
/// last `)`.
pub fn parse_stat_cpu_rss(stat: &str) -> Result<(u64, u64), ParseError> {
    let after =
        stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| ParseError::new("a /proc/PID/stat line", stat))?;
    // After the name: field 3 (state) is index 0; utime is field 14, stime 15, rss 24.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| ParseError::new("a /proc/PID/stat line", stat))
    };
    Ok((field(14)?.saturating_add(field(15)?), field(24)?))
}

/// `Pss:` of /proc/PID/smaps_rollup, in bytes.
pub fn parse_rollup_pss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 2104 0 0 0 150 27 0 0 20 0 3 0 \
                    99120 34189312 2370 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat_cpu_rss(stat), Ok((177, 2370)));
        assert!(parse_stat_cpu_rss("4242 (x) S 1").is_err());
        assert!(parse_stat_cpu_rss("no parenthesis").is_err());
    }

    #[test]
    fn rollup_pss_is_in_bytes() {
        let text = "55d0c000-7ffd [rollup]\nRss:                9348 kB\nPss:                5120 kB\nPss_Anon: 1 kB\n";
        assert_eq!(parse_rollup_pss(text), Some(5120 * 1024));
        assert_eq!(parse_rollup_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn this_process_spends_memory_and_cpu() {
        let me = ProcessUsage::read(std::process::id()).unwrap();
        assert!(me.rss_bytes > 1 << 20, "{me:?}");
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let later = ProcessUsage::read(std::process::id()).unwrap();
        assert!(later.cpu_us > me.cpu_us, "{me:?} then {later:?} ({x})");
        assert!(cpus_available() >= 1);
    }
}
