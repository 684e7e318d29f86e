//! The kernel's TCP counters over a phase, as the coordinator reads them for the whole
//! machine (namespace): read as the phase starts and as it ends, and their deltas; or,
//! when either reading failed, no deltas and the figure `kernel` unobserved, so that
//! `kernel.ListenOverflows == 0` does not pass on counters nobody read.

use std::collections::BTreeMap;
use std::io;

use probe::KernelCounters;

use crate::expect::{Expectation, Metric};
use crate::report::unobserved::{self, Unobserved};

/// The counters as a phase started.
#[derive(Debug)]
pub struct PhaseCounters {
    before: io::Result<KernelCounters>,
}

impl PhaseCounters {
    /// Read the counters now, as the phase starts.
    pub fn start() -> PhaseCounters {
        PhaseCounters { before: KernelCounters::read() }
    }

    /// Read them again as the phase ends: their deltas over the phase (see [`deltas`]).
    pub fn end(self, expect: &[Expectation], unobserved: &mut Unobserved) -> BTreeMap<String, i64> {
        deltas(self.before, KernelCounters::read(), expect, unobserved)
    }
}

/// The deltas from `before` to `after` (non-zero only); none, with `kernel` marked
/// unobserved, when either reading failed. A counter that an expectation in `expect`
/// names and this kernel lacks is unobserved too (`kernel.<Counter>`): its delta would
/// read 0.
pub fn deltas(
    before: io::Result<KernelCounters>,
    after: io::Result<KernelCounters>,
    expect: &[Expectation],
    unobserved: &mut Unobserved,
) -> BTreeMap<String, i64> {
    let (before, after) = match (before, after) {
        (Ok(before), Ok(after)) => (before, after),
        (Err(e), _) | (_, Err(e)) => {
            unobserved.mark(unobserved::KERNEL, format!("the kernel's TCP counters could not be read: {e}"));
            return BTreeMap::new();
        }
    };
    for e in expect {
        if let Metric::Kernel(name) = &e.metric {
            if after.get(name).is_none() {
                unobserved.mark(
                    &format!("{}.{name}", unobserved::KERNEL),
                    format!(
                        "this kernel has no counter `{name}` in /proc/net/snmp (Tcp) or /proc/net/netstat (TcpExt)"
                    ),
                );
            }
        }
    }
    before.delta(&after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(overflows: i64) -> io::Result<KernelCounters> {
        let snmp = "Tcp: ActiveOpens\nTcp: 10\n";
        let netstat = format!("TcpExt: ListenOverflows\nTcpExt: {overflows}\n");
        Ok(KernelCounters::parse(snmp, &netstat).unwrap())
    }

    fn expect(name: &str) -> Vec<Expectation> {
        vec![Expectation::parse(name, &toml::Value::String("== 0".into())).unwrap()]
    }

    #[test]
    fn deltas_or_the_reason_there_are_none() {
        let mut u = Unobserved::default();
        let d = deltas(counters(1), counters(4), &expect("kernel.ListenOverflows"), &mut u);
        assert_eq!((d.get("ListenOverflows"), u.is_empty()), (Some(&3), true));

        let unreadable =
            || Err(io::Error::new(io::ErrorKind::IsADirectory, "reading /proc/net/netstat: Is a directory"));
        for (before, after) in [(unreadable(), counters(0)), (counters(0), unreadable())] {
            let mut u = Unobserved::default();
            assert!(deltas(before, after, &[], &mut u).is_empty());
            assert_eq!(
                u.get("kernel"),
                Some("the kernel's TCP counters could not be read: reading /proc/net/netstat: Is a directory")
            );
        }

        let mut u = Unobserved::default();
        deltas(counters(0), counters(0), &expect("kernel.TCPSomethingNew"), &mut u);
        assert!(u.get("kernel.TCPSomethingNew").unwrap().contains("no counter `TCPSomethingNew`"), "{u:?}");
        assert_eq!(u.get("kernel"), None);
    }
}
