//! Numbers as the human views write them (the text report, the HTML page, JUnit
//! messages, `sockcap compare`): counts with thousands separators, durations,
//! microseconds and rates, each written in one place.

pub use crate::printable::thousands;

/// `-12,345`: a signed count with thousands separators.
pub fn signed_thousands(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", thousands(n.unsigned_abs()))
}

/// Microseconds, human-sized: `850µs`, `12.3ms`, `1.24s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// `2.03 s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// Source addresses as a person reads them: runs of consecutive IPv4 addresses as one
/// range (`127.0.0.1–127.0.0.71, ::1`), the kernel's choice when there are none.
pub fn sources(addrs: &[String]) -> String {
    if addrs.is_empty() {
        return "kernel's choice".to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> = None;
    let close = |run: (std::net::Ipv4Addr, std::net::Ipv4Addr), parts: &mut Vec<String>| {
        parts.push(if run.0 == run.1 { run.0.to_string() } else { format!("{}–{}", run.0, run.1) });
    };
    for addr in addrs {
        match (addr.parse::<std::net::Ipv4Addr>(), run) {
            (Ok(ip), Some((first, last))) if u32::from(last).checked_add(1) == Some(u32::from(ip)) => {
                run = Some((first, ip));
            }
            (Ok(ip), _) => {
                if let Some(r) = run.take() {
                    close(r, &mut parts);
                }
                run = Some((ip, ip));
            }
            (Err(_), _) => {
                if let Some(r) = run.take() {
                    close(r, &mut parts);
                }
                parts.push(addr.clone());
            }
        }
    }
    if let Some(r) = run {
        close(r, &mut parts);
    }
    parts.join(", ")
}

/// How a view writes whole numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    /// `3333`, as the text report writes every count.
    Plain,
    /// `3,333`, as the HTML page writes every count.
    Grouped,
}

/// A rate per second without its unit: whole from 100 up (`3333` or `3,333`, as
/// `digits` says), one decimal below (`12.5`).
pub fn rate(per_s: f64, digits: Digits) -> String {
    match digits {
        _ if per_s < 100.0 => format!("{per_s:.1}"),
        Digits::Plain => format!("{per_s:.0}"),
        Digits::Grouped => thousands(per_s.round() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_read_well() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.35ms");
        assert_eq!(micros(1_240_000), "1.24s");
    }

    #[test]
    fn consecutive_sources_read_as_ranges() {
        let addrs: Vec<String> = (1..=71).map(|i| format!("127.0.0.{i}")).collect();
        assert_eq!(sources(&addrs), "127.0.0.1–127.0.0.71");
        let mixed = ["127.0.0.1", "127.0.0.2", "127.0.1.9", "::1", "127.0.0.255", "127.0.1.0"].map(String::from);
        assert_eq!(sources(&mixed), "127.0.0.1–127.0.0.2, 127.0.1.9, ::1, 127.0.0.255–127.0.1.0");
        assert_eq!(sources(&[]), "kernel's choice");
    }

    #[test]
    fn counts_and_rates_read_well() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(signed_thousands(-12_345), "-12,345");
        assert_eq!(rate(12.46, Digits::Grouped), "12.5");
        assert_eq!(rate(3333.3, Digits::Plain), "3333");
        assert_eq!(rate(3333.3, Digits::Grouped), "3,333");
    }
}
