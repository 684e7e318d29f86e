//! Findings: sentences a reader can act on, drawn from a finished report
//! (errors that point at a limit on either side, missing census data).

use crate::failure::ErrorKind;
use crate::report::{PhaseReport, RunReport, TargetFds};

/// One sentence on a phase whose ports ran out: when, how many TIME_WAIT, and whether
/// ports came back (which of the kernel's three behaviours it saw).
fn exhaustion(report: &RunReport, phase: &PhaseReport) -> Option<String> {
    let e = phase.exhaustion?;
    let target = &report.scenario.target;
    let range = e.ip_local_port_range.map_or(String::new(), |(lo, hi)| {
        format!(" (ip_local_port_range {lo}-{hi}: {} ports)", u32::from(hi - lo) + 1)
    });
    let reuse = e.tcp_tw_reuse.map_or(String::new(), |v| format!(", tcp_tw_reuse {v}"));
    let head = format!(
        "phase `{}`: ports toward {target} ran out after {} connections in {:.2} s: {} sockets in TIME_WAIT{range}{reuse}",
        phase.name,
        e.after_connections,
        e.after_ms as f64 / 1000.0,
        e.time_wait
    );
    let after_s = phase.duration_ms.saturating_sub(e.after_ms) as f64 / 1000.0;
    let tail = match e.recovered_after_ms {
        Some(ms) => format!(
            "; ports came back {:.2} s later (TIME_WAIT reuse: tcp_tw_reuse 1, or 2 on loopback, gives a port back \
             after ~1 s), so the churn ran at about {:.0} cycles/s with {} connects refused EADDRNOTAVAIL",
            ms as f64 / 1000.0,
            phase.achieved_rate_per_s,
            e.failed
        ),
        None => format!(
            "; no port came back in the remaining {after_s:.1} s ({} connects failed): TIME_WAIT holds each port \
             for 60 s when tcp_tw_reuse is 0",
            e.failed
        ),
    };
    Some(format!(
        "{head}{tail}. Fixes: close with `rst` (no TIME_WAIT), spread over more source addresses, \
         widen ip_local_port_range, or set tcp_tw_reuse = 1"
    ))
}

/// Connections the target accepted and closed before its CONNACK: what the target's own
/// descriptors showed when the phases that saw them ended (measured when the target
/// listens on this machine and its processes can be read), or that they are unknown.
fn closed_before_connack(report: &RunReport, n: u64) -> String {
    let target = &report.scenario.target;
    let head =
        format!("{n} clients saw the TCP connect to {target} succeed and then the connection close before any CONNACK");
    let seen = |p: &&PhaseReport| p.errors.get(ErrorKind::ClosedBeforeConnack.key()).is_some_and(|n| *n > 0);
    let measured = report.phases.iter().filter(seen).filter_map(|p| p.target_fds.map(|t| (p, t)));
    let check = "(`cat /proc/PID/limits`, LimitNOFILE= for a service) and its log";
    match measured.max_by_key(|(_, t)| (t.open + 8 >= t.limit, t.open)) {
        Some((p, t)) if t.open + 8 >= t.limit => format!(
            "{head}: the target's processes held {} of their {} descriptors at the end of phase `{}`: it is at its \
             descriptor limit and closes what it cannot serve; raise its limit (LimitNOFILE= for a service, \
             `ulimit -n` before starting it) or run more target processes",
            t.open, t.limit, p.name
        ),
        Some((p, t)) => format!(
            "{head}: the target's processes held {} of their {} descriptors at the end of phase `{}`, so they were \
             not out of descriptors then: check the target's own connection limit (a broker's max_connections) \
             and its log",
            t.open, t.limit, p.name
        ),
        None => format!(
            "{head}: a target out of descriptors does this, but its descriptor limit is unknown here (it is not \
             on this machine, or its processes could not be read): check its limit {check}"
        ),
    }
}

/// Sum of one error kind over all phases.
fn total(report: &RunReport, kind: ErrorKind) -> u64 {
    report.phases.iter().map(|p| p.errors.get(kind.key()).copied().unwrap_or(0)).sum()
}

/// What the errors of a run point at, one sentence each.
pub fn findings(report: &RunReport) -> Vec<String> {
    let target = &report.scenario.target;
    let mut out = Vec::new();
    let n = total(report, ErrorKind::ClosedBeforeConnack);
    let at_limit = |t: &TargetFds| t.open + 8 >= t.limit;
    if n > 0 {
        out.push(closed_before_connack(report, n));
    }
    // Within a few descriptors of the limit: the listener's accept() fails next.
    if let Some((phase, t)) =
        report.phases.iter().find_map(|p| p.target_fds.filter(|t| at_limit(t)).map(|t| (p, t))).filter(|_| n == 0)
    {
        out.push(format!(
            "the target's processes held {} of their {} descriptors at the end of phase `{}`: it is at its \
             descriptor limit; raise it (LimitNOFILE= for a service, `ulimit -n` before starting it) or run \
             more target processes",
            t.open, t.limit, phase.name
        ));
    }
    let n = total(report, ErrorKind::ConnackRefused);
    if n > 0 {
        out.push(format!(
            "{n} MQTT sessions were refused by {target} (CONNACK with a non-zero return code): \
             check the broker's authentication (username / password in [mqtt]) and ACLs"
        ));
    }
    let n = total(report, ErrorKind::TlsCertificate);
    if n > 0 {
        out.push(format!(
            "{n} TLS handshakes with {target} failed on a certificate: its certificate was not trusted (check              [tls] ca, and server_name against the names in the certificate), or {target} refused ours (mTLS:              [tls] cert and key)"
        ));
    }
    let n = total(report, ErrorKind::WsUpgrade);
    if n > 0 {
        out.push(format!(
            "{n} WebSocket upgrades to {target} failed: check that it serves WebSocket on that port, the path              ([ws] path) and that it speaks the `mqtt` subprotocol"
        ));
    }
    let n = total(report, ErrorKind::Refused);
    if n > 0 {
        out.push(format!("{n} connects to {target} were refused: nothing listened there, or the target went away"));
    }
    out.extend(report.phases.iter().filter_map(|p| exhaustion(report, p)));
    let n = total(report, ErrorKind::AddrNotAvailable);
    if n > 0 && report.phases.iter().all(|p| p.exhaustion.is_none()) {
        let range = report.limits.in_force.ip_local_port_range;
        let range = range.map_or("?".to_string(), |(lo, hi)| format!("{lo}-{hi}"));
        out.push(format!(
            "{n} connects failed with EADDRNOTAVAIL: the ephemeral ports toward {target} ran out \
             (ip_local_port_range {range}); add source addresses (`sources`), widen the range, \
             or close with `rst` to avoid TIME_WAIT"
        ));
    }
    let key = libc::EADDRNOTAVAIL.to_string();
    let unbound: u64 = report.phases.iter().filter_map(|p| p.other_errnos.get(&key)).sum();
    if unbound > 0 {
        out.push(format!(
            "{unbound} connections could not bind their source address (EADDRNOTAVAIL at bind, counted `other`): \
             an address in `sources` is not this machine's (any more; see `ip -brief address`). The ports did not \
             run out"
        ));
    }
    let n = total(report, ErrorKind::TooManyOpenFiles);
    if n > 0 {
        out.push(format!(
            "{n} sockets could not be opened: this process ran out of descriptors (soft limit {})",
            report.limits.nofile_soft_after
        ));
    }
    for p in report.phases.iter().filter(|p| p.ports_taken > 0) {
        out.push(format!(
            "phase `{}`: {} of the source ports sockcap chose were in use by other sockets (another program's, \
             on a source address it also uses); the kernel chose those connections' ports instead, \
             which slows connect() once a (source, target) pair holds half the range: give sockcap source \
             addresses of its own (`sources`)",
            p.name, p.ports_taken
        ));
    }
    let lost: u64 = report.phases.iter().map(|p| p.drops).sum();
    let back: u64 = report.phases.iter().filter_map(|p| p.recovery.as_ref()).map(|r| r.recovered).sum();
    let last_back = report.phases.iter().filter_map(|p| p.recovery.as_ref()?.last_back_ms).max();
    match last_back {
        Some(ms) if lost > 0 => out.push(format!(
            "{lost} established connections were lost without sockcap closing them; {back} came back under \
             [client] reconnect, the last {:.1} s into the run",
            ms as f64 / 1000.0
        )),
        _ if lost > 0 => out.push(format!("{lost} established connections were lost without sockcap closing them")),
        _ => {}
    }
    let gave_up: u64 = report.phases.iter().filter_map(|p| p.errors.get("reconnect_gave_up")).sum();
    if gave_up > 0 {
        out.push(format!(
            "{gave_up} lost connections were given up after [client] reconnect's max_attempts: raise it, or \
             leave it out to try until the phase ends"
        ));
    }
    if report.outcome == crate::report::Outcome::Interrupted {
        out.push("the run was interrupted: phases after the last one shown did not run".to_string());
    }
    if report.outcome == crate::report::Outcome::Failed {
        out.push("a worker process died (see the note naming it): phases after the last one shown did not run".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    /// The sample report with `n` connections closed before CONNACK in its first phase,
    /// and the target's descriptors as measured then (`None`: not measured).
    fn closed_before_connack_with(n: u64, fds: Option<TargetFds>) -> Vec<String> {
        let mut report = sample_report();
        report.phases[0].errors.insert(ErrorKind::ClosedBeforeConnack.key().into(), n);
        report.phases[0].target_fds = fds;
        findings(&report)
    }

    fn the_one(findings: &[String]) -> &str {
        let found: Vec<&String> = findings.iter().filter(|f| f.contains("before any CONNACK")).collect();
        assert_eq!(found.len(), 1, "{findings:?}");
        found[0]
    }

    #[test]
    fn closed_before_connack_quotes_the_targets_own_measured_limit() {
        let at_limit = Some(TargetFds { processes: 1, open: 510, limit: 512 });
        let findings = closed_before_connack_with(42, at_limit);
        let note = the_one(&findings);
        assert!(note.starts_with("42 clients saw the TCP connect to 127.0.0.1:1883 succeed"), "{note}");
        assert!(note.contains("held 510 of their 512 descriptors at the end of phase `ramp`"), "{note}");
        assert!(note.contains("at its descriptor limit"), "{note}");
        // Said once, not again in a sentence of its own.
        assert_eq!(findings.iter().filter(|f| f.contains("512")).count(), 1, "{findings:?}");
        for f in &findings {
            assert!(!f.contains("mosquitto") && !f.contains("19,99") && !f.contains("20,000"), "{f}");
        }
    }

    #[test]
    fn closed_before_connack_far_from_the_limit_is_not_blamed_on_descriptors() {
        let far = Some(TargetFds { processes: 1, open: 30, limit: 1_048_576 });
        let findings = closed_before_connack_with(10, far);
        let note = the_one(&findings);
        assert!(
            note.contains("held 30 of their 1048576 descriptors") && note.contains("not out of descriptors"),
            "{note}"
        );
        assert!(note.contains("connection limit"), "{note}");
    }

    #[test]
    fn closed_before_connack_with_no_reading_says_the_limit_is_unknown() {
        let findings = closed_before_connack_with(7, None);
        let note = the_one(&findings);
        assert!(note.contains("descriptor limit is unknown here"), "{note}");
        assert!(!note.contains("mosquitto") && !note.contains("19,99"), "{note}");
    }

    #[test]
    fn a_bind_refused_for_its_address_is_not_called_port_exhaustion() {
        let mut report = sample_report();
        report.phases[0].errors.insert(ErrorKind::Other.key().into(), 3);
        report.phases[0].other_errnos.insert(libc::EADDRNOTAVAIL.to_string(), 3);
        let findings = findings(&report);
        assert!(
            findings.iter().any(|f| f.starts_with("3 connections could not bind their source address")),
            "{findings:?}"
        );
        assert!(!findings.iter().any(|f| f.contains("TIME_WAIT") || f.contains("ran out (")), "{findings:?}");
    }

    #[test]
    fn losses_say_how_many_came_back_and_how_many_were_given_up() {
        let mut report = sample_report();
        report.phases[1].drops = 300;
        report.phases[1].recovery = Some(crate::report::Recovery {
            lost: 300,
            recovered: 298,
            last_back_ms: Some(4_250),
            ..Default::default()
        });
        report.phases[1].errors.insert("reconnect_gave_up".into(), 2);
        let notes = findings(&report);
        let back = "300 established connections were lost without sockcap closing them; 298 came back under \
                    [client] reconnect, the last 4.2 s into the run";
        assert!(notes.iter().any(|n| n == back), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("2 lost connections were given up")), "{notes:?}");
    }
}
