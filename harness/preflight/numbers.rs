//! How the checks' sentences write numbers: counts with thousands separators, bytes,
//! limits (`unlimited`) and plurals.

/// `12,345`.
pub use crate::report::thousands as count;

/// A limit, `unlimited` for RLIM_INFINITY.
pub(super) fn limit(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        count(n)
    }
}

/// `10.5 KB`, `1.2 GB` (powers of 1000, as the measured figures are given).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} KB", n / 1e3),
        n => format!("{n} B"),
    }
}

pub(super) fn plural(n: u64, suffix: &'static str) -> &'static str {
    if n == 1 {
        ""
    } else {
        suffix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(28_232), "28,232");
        assert_eq!(count(999), "999");
        assert_eq!(bytes(10_800), "10.8 KB");
        assert_eq!(bytes(23 << 30), "24.7 GB");
    }
}
