//! Findings: sentences a reader can act on, drawn from a finished report
//! (errors that point at a limit on either side, missing census data).

use crate::report::RunReport;
use crate::stats::ErrorKind;

/// Sum of one error kind over all phases.
fn total(report: &RunReport, kind: ErrorKind) -> u64 {
    report.phases.iter().map(|p| p.errors.get(kind.key()).copied().unwrap_or(0)).sum()
}

/// What the errors of a run point at, one sentence each.
pub fn findings(report: &RunReport) -> Vec<String> {
    let target = &report.scenario.target;
    let mut out = Vec::new();
    let n = total(report, ErrorKind::ClosedBeforeConnack);
    if n > 0 {
        out.push(format!(
            "{n} clients saw the TCP connect to {target} succeed and then the connection close before any CONNACK: \
             the target may be out of descriptors (mosquitto here holds at most ~19,990 clients); \
             check its descriptor limit (`cat /proc/PID/limits`, LimitNOFILE= for a service) and its log"
        ));
    }
    let n = total(report, ErrorKind::ConnackRefused);
    if n > 0 {
        out.push(format!(
            "{n} MQTT sessions were refused by {target} (CONNACK with a non-zero return code): \
             check the broker's authentication (username / password in [mqtt]) and ACLs"
        ));
    }
    let n = total(report, ErrorKind::Refused);
    if n > 0 {
        out.push(format!("{n} connects to {target} were refused: nothing listened there, or the target went away"));
    }
    let n = total(report, ErrorKind::AddrNotAvailable);
    if n > 0 {
        let range = report.limits.in_force.ip_local_port_range;
        let range = range.map_or("?".to_string(), |(lo, hi)| format!("{lo}-{hi}"));
        out.push(format!(
            "{n} connects failed with EADDRNOTAVAIL: the ephemeral ports toward {target} ran out \
             (ip_local_port_range {range}); add source addresses (`sources`), widen the range, \
             or close with `rst` to avoid TIME_WAIT"
        ));
    }
    let n = total(report, ErrorKind::TooManyOpenFiles);
    if n > 0 {
        out.push(format!(
            "{n} sockets could not be opened: this process ran out of descriptors (soft limit {})",
            report.limits.nofile_soft_after
        ));
    }
    let lost: u64 = report.phases.iter().map(|p| p.drops).sum();
    if lost > 0 {
        out.push(format!("{lost} established connections were lost without sockcap closing them"));
    }
    if report.outcome == crate::report::Outcome::Interrupted {
        out.push("the run was interrupted: phases after the last one shown did not run".to_string());
    }
    out
}
