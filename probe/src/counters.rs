//! Kernel TCP counters from /proc/net/snmp (`Tcp:`) and /proc/net/netstat (`TcpExt:`).
//!
//! Both files hold sections as pairs of lines, a header of names and a line of values,
//! each opening with the section name (`Tcp: ActiveOpens PassiveOpens ...` then
//! `Tcp: 1 200 ...`). [`KernelCounters::parse`] reads them from text; [`KernelCounters::read`]
//! reads the files of the current network namespace.

use std::collections::BTreeMap;

use crate::parse_error::ParseError;

const PROC_NET_SNMP: &str = "/proc/net/snmp";
const PROC_NET_NETSTAT: &str = "/proc/net/netstat";

/// A snapshot of counters by name (`ActiveOpens`, `ListenOverflows`, `TWRecycled`, ...).
/// `Tcp` and `TcpExt` names do not collide, so they share one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    /// Counter values by their bare kernel name. Most are cumulative since boot (or since
    /// the namespace was made); a few are gauges (`CurrEstab`) or constants (`MaxConn`, -1).
    pub values: BTreeMap<String, i64>,
}

impl KernelCounters {
    /// Read both files of the current network namespace; an error names the file.
    pub fn read() -> std::io::Result<KernelCounters> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| std::io::Error::new(e.kind(), format!("reading {path}: {e}")))
        };
        let (snmp, netstat) = (read(PROC_NET_SNMP)?, read(PROC_NET_NETSTAT)?);
        Ok(KernelCounters::parse(&snmp, &netstat)?)
    }

    /// The `Tcp` section of a /proc/net/snmp text and the `TcpExt` section of a
    /// /proc/net/netstat text.
    pub fn parse(snmp: &str, netstat: &str) -> Result<KernelCounters, ParseError> {
        let mut values = BTreeMap::new();
        parse_section(snmp, "Tcp", &mut values)?;
        parse_section(netstat, "TcpExt", &mut values)?;
        Ok(KernelCounters { values })
    }

    /// One counter, if the kernel has it.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    /// `after - self` for every counter in both snapshots; zero deltas are left out.
    pub fn delta(&self, after: &KernelCounters) -> BTreeMap<String, i64> {
        after
            .values
            .iter()
            .filter_map(|(k, v)| {
                let d = v - self.values.get(k).copied().unwrap_or(0);
                (d != 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// Add the counters of `section` (`Tcp`, `TcpExt`, ...) in `text` to `values`: the first
/// line opening with `section:` names them, the next such line holds their values.
pub fn parse_section(text: &str, section: &str, values: &mut BTreeMap<String, i64>) -> Result<(), ParseError> {
    let mut lines = text.lines().filter_map(|line| {
        let (name, rest) = line.split_once(':')?;
        (name == section).then_some(rest)
    });
    let header = lines.next().ok_or_else(|| ParseError::new("no counter section", section))?;
    let numbers = lines.next().ok_or_else(|| ParseError::new("counter names without values", header))?;
    let (names, numbers): (Vec<&str>, Vec<&str>) =
        (header.split_ascii_whitespace().collect(), numbers.split_ascii_whitespace().collect());
    if names.len() != numbers.len() {
        return Err(ParseError::new("counter names and values differ in number", header));
    }
    for (name, number) in names.into_iter().zip(numbers) {
        let value = number.parse().map_err(|_| ParseError::new("counter value is not an integer", number))?;
        values.insert(name.to_owned(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on Linux 6.18 (x86_64) during a 30,000-connection run.
    const SNMP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proc_net_snmp.txt"));
    const NETSTAT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proc_net_netstat.txt"));

    #[test]
    fn recorded_text() {
        let c = KernelCounters::parse(SNMP, NETSTAT).unwrap();
        // Tcp: 1 200 120000 -1 20076 20043 0 41 30000 173109 172888 1 0 37 0
        assert_eq!(c.get("RtoMin"), Some(200));
        assert_eq!(c.get("MaxConn"), Some(-1));
        assert_eq!(c.get("ActiveOpens"), Some(20076));
        assert_eq!(c.get("PassiveOpens"), Some(20043));
        assert_eq!(c.get("CurrEstab"), Some(30000));
        assert_eq!(c.get("InCsumErrors"), Some(0));
        // TcpExt
        assert_eq!(c.get("TW"), Some(5039));
        assert_eq!(c.get("TWRecycled"), Some(0));
        assert_eq!(c.get("ListenOverflows"), Some(0));
        assert_eq!(c.get("TCPTimeWaitOverflow"), Some(0));
        assert_eq!(c.get("DelayedACKs"), Some(21));
        assert_eq!(c.get("TCPAODroppedIcmps"), Some(0));
        // Only Tcp and TcpExt: 15 + 135 names, and no Udp, IpExt or MPTcpExt counter.
        assert_eq!(c.values.len(), 15 + 135);
        assert_eq!(c.get("InDatagrams"), None);
        assert_eq!(c.get("InOctets"), None);
        assert_eq!(c.get("MPCapableSYNRX"), None);
    }

    #[test]
    fn delta_leaves_out_zeros() {
        let before = KernelCounters::parse(SNMP, NETSTAT).unwrap();
        let mut after = before.clone();
        *after.values.get_mut("ActiveOpens").unwrap() += 5;
        *after.values.get_mut("ListenOverflows").unwrap() += 1;
        let d = before.delta(&after);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            [("ActiveOpens".to_owned(), 5), ("ListenOverflows".to_owned(), 1)]
        );
    }

    #[test]
    fn malformed_sections_are_errors() {
        let mut v = BTreeMap::new();
        assert!(parse_section("Udp: A B\nUdp: 1 2\n", "Tcp", &mut v).is_err());
        assert!(parse_section("Tcp: A B\n", "Tcp", &mut v).is_err());
        assert!(parse_section("Tcp: A B\nTcp: 1\n", "Tcp", &mut v).is_err());
        assert!(parse_section("Tcp: A B\nTcp: 1 x\n", "Tcp", &mut v).is_err());
        // `TcpExt:` is not `Tcp:`.
        assert!(parse_section("TcpExt: A\nTcpExt: 1\n", "Tcp", &mut v).is_err());
    }

    #[test]
    fn live_files_parse() {
        let c = KernelCounters::read().unwrap();
        assert!(c.get("ActiveOpens").is_some());
        assert!(c.get("ListenOverflows").is_some());
    }
}
