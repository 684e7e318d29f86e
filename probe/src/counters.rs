//! Kernel TCP counters from /proc/net/snmp (`Tcp:`) and /proc/net/netstat (`TcpExt:`).
//!
//! STUB: interface fixed, implementation pending.

use std::collections::BTreeMap;

/// A snapshot of counters by name (`ActiveOpens`, `ListenOverflows`, `TWRecycled`, ...).
/// `Tcp` and `TcpExt` names do not collide, so they share one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub values: BTreeMap<String, i64>,
}

impl KernelCounters {
    /// Read both files of the current network namespace.
    pub fn read() -> std::io::Result<KernelCounters> {
        Ok(KernelCounters::default())
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
