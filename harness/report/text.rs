//! The human report on stdout: a block per phase (operations, census, latency,
//! errors, kernel counters, expectations), then the verdict and the findings.

use std::fmt::Write as _;

use probe::StateCounts;

use crate::latency::LatencySummary;
use crate::printable::printable;
use crate::report::format::{self, micros, Digits};
use crate::report::spend::bytes;
use crate::report::{unobserved, EventReport, ExpectationResult, PhaseReport, RunReport};

/// Render the whole report.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    let total = report.phases.len();
    for (i, phase) in report.phases.iter().enumerate() {
        out.push('\n');
        phase_block(&mut out, i, total, phase);
    }
    verdict(&mut out, report);
    out
}

fn header(out: &mut String, r: &RunReport) {
    let s = &r.scenario;
    let embedded = if s.embedded_target { ", embedded target" } else { "" };
    // MQTT 5 says so; 3.1.1, the default, stays `mqtt`.
    let version = if s.mqtt_version == Some(5) { " 5" } else { "" };
    let over = if s.transport == "tcp" { String::new() } else { format!(" over {}", printable(&s.transport)) };
    let _ = writeln!(
        out,
        "sockcap {} — {} ({}{version}{over} → {}{embedded})",
        r.sockcap_version,
        printable(&s.name),
        s.protocol,
        s.target
    );
    if s.tls_insecure {
        let _ = writeln!(
            out,
            "WARNING: TLS certificates NOT verified (insecure = true): any target passes as the one named"
        );
    }
    let l = &r.limits;
    let f = &l.in_force;
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let range = f.ip_local_port_range.map_or("?".to_string(), |(a, b)| format!("{a}-{b}"));
    let _ = writeln!(
        out,
        "limits: RLIMIT_NOFILE soft {} → {} (hard {}), needed {}; fs.nr_open {}, fs.file-max {}",
        l.nofile_soft_before,
        l.nofile_soft_after,
        l.nofile_hard,
        l.descriptors_needed,
        opt(f.nr_open),
        opt(f.file_max)
    );
    let _ = writeln!(
        out,
        "sysctls: ip_local_port_range {range}, tcp_tw_reuse {}, tcp_max_tw_buckets {}, somaxconn {}, tcp_fin_timeout {}",
        f.tcp_tw_reuse.map_or("?".to_string(), |v| v.to_string()),
        opt(f.tcp_max_tw_buckets),
        opt(f.somaxconn),
        opt(f.tcp_fin_timeout)
    );
    let sources = super::format::sources(&s.sources);
    let _ = writeln!(out, "sources: {sources}; census: {}", r.probe_backend);
    if let Some(shard) = &r.shard {
        let _ = writeln!(
            out,
            "shard {}/{} on {} (common start: {}); expectations are judged on the merged report",
            shard.index, shard.count, shard.host, shard.start
        );
    }
    if let Some(merge) = &r.merge {
        let from: Vec<String> = merge.shards.iter().map(|m| format!("{} ({})", m.index, m.host)).collect();
        let _ = writeln!(
            out,
            "merged from {} of {} shards: {}; times count from the common start",
            merge.shards.len(),
            merge.expected_shards,
            from.join(", ")
        );
        if merge.partial {
            let missing: Vec<String> = merge.missing.iter().map(u32::to_string).collect();
            let _ = writeln!(out, "PARTIAL: no report from shard {}; its figures are missing", missing.join(", "));
        }
    }
}

fn phase_block(out: &mut String, i: usize, total: usize, p: &PhaseReport) {
    let secs = p.duration_ms as f64 / 1000.0;
    let errors: u64 = crate::failure::error_total(&p.errors);
    let work = match p.kind.as_str() {
        "connect" => format!("{}/{} connected, {}/s", p.succeeded, p.planned, rate(p)),
        "close" => format!("{}/{} closed, {}/s", p.succeeded, p.planned, rate(p)),
        "churn" => format!("{}/{} connect+close cycles, {}/s", p.succeeded, p.planned, rate(p)),
        _ => format!("{} held", p.open_at_end),
    };
    let _ = writeln!(
        out,
        "phase {}/{total} {} ({}) {secs:.2}s: {work}; errors {errors}; drops {}",
        i + 1,
        printable(&p.name),
        p.kind,
        p.drops
    );
    if p.latency_us.tls.count > 0 {
        let full = p.latency_us.tls.count.saturating_sub(p.tls_resumed);
        let _ = writeln!(out, "  tls      {full} full handshakes, {} resumed", p.tls_resumed);
    }
    if p.reconnect_attempts > 0 || p.reconnected > 0 {
        let _ = writeln!(out, "  reconnect attempts {}; reconnected {}", p.reconnect_attempts, p.reconnected);
    }
    for e in &p.events {
        let _ = writeln!(out, "  event    {}", event_line(e));
    }
    let census = |figure: &str, counts: &StateCounts| match p.unobserved.get(figure) {
        Some(why) => format!("unobserved: {why}"),
        None => states(counts),
    };
    let _ = writeln!(out, "  census   client  {}", census(unobserved::CENSUS_CLIENT, &p.census.client));
    if let Some(server) = &p.census.server {
        let _ = writeln!(out, "           server  {}", census(unobserved::CENSUS_SERVER, server));
    }
    if let Some((t_ms, peak)) = peak_established(p) {
        let _ = writeln!(out, "  peak     client established {peak} at {:.1}s (census samples)", t_ms as f64 / 1000.0);
    }
    if let Some(t) = &p.target_fds {
        let processes = if t.processes == 1 { "1 process".to_string() } else { format!("{} processes", t.processes) };
        let _ = writeln!(out, "  target   {processes}, {} descriptors open of {}", t.open, t.limit);
    }
    spend(out, p);
    latency_table(out, p);
    messages(out, p);
    recovery(out, p);
    let failed: Vec<String> = p.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "  errors   {}", failed.join(", "));
    }
    if !p.kernel.is_empty() {
        let deltas: Vec<String> = p.kernel.iter().take(12).map(|(k, v)| format!("{k} {v:+}")).collect();
        let more = p.kernel.len().saturating_sub(12);
        let more = if more > 0 { format!(" (+{more} more in --json)") } else { String::new() };
        let _ = writeln!(out, "  kernel   {}{more}", deltas.join(", "));
    }
    for (figure, why) in p.unobserved.iter().filter(|(f, _)| !f.starts_with("census.")) {
        let _ = writeln!(out, "  unobserved {figure}: {why}");
    }
    for e in &p.expectations {
        let _ = writeln!(out, "  {}", expectation(e));
    }
}

/// What the target, the kernel and sockcap spent, and the phase's validity.
fn spend(out: &mut String, p: &PhaseReport) {
    if let Some(t) = &p.target {
        let per_conn =
            t.rss_per_conn_bytes.map_or("no connection held".to_string(), |b| format!("{} per connection", bytes(b)));
        let pss = t.pss_bytes.map_or(String::new(), |b| format!(" (PSS {})", bytes(b)));
        let _ = writeln!(
            out,
            "  spend    target {}: RSS {}{pss}, {per_conn} ({} held); CPU {:.2}s, {:.1}% of a core",
            if t.processes == 1 { "1 process".to_string() } else { format!("{} processes", t.processes) },
            bytes(t.rss_bytes),
            format::thousands(t.connections),
            t.cpu_seconds,
            t.cpu_percent
        );
    }
    let side = |m: &Option<crate::report::SideMemory>| {
        m.map(|m| {
            format!("{} sockets {} ({} buffers)", format::thousands(m.sockets), bytes(m.bytes), bytes(m.buffer_bytes))
        })
    };
    let sides: Vec<String> = [("client", side(&p.kernel_memory.client)), ("server", side(&p.kernel_memory.server))]
        .into_iter()
        .filter_map(|(name, m)| m.map(|m| format!("{name} {m}")))
        .collect();
    if !sides.is_empty() {
        let _ = writeln!(out, "  kmem     {}", sides.join("; "));
    }
    if let Some(g) = &p.generator {
        let l = &p.latency_us.lateness;
        let late = if l.count > 0 {
            format!("; lateness p50 {} p99 {} max {}", micros(l.p50), micros(l.p99), micros(l.max))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  sockcap  CPU {:.1}% of {} cores ({:.2}s){late}; ports {} of {}",
            g.cpu_percent,
            g.cores,
            g.cpu_seconds,
            format::thousands(g.ports_in_use),
            format::thousands(g.port_budget)
        );
    }
    if let Some(why) = &p.invalid {
        let _ = writeln!(out, "  INVALID: {why}");
    }
}

/// The most client-side ESTABLISHED the phase's census samples saw, and when first, when it
/// differs from the closing census (a merged report's samples are the shards' sum, so
/// this is the peak of the sum).
fn peak_established(p: &PhaseReport) -> Option<(u64, u64)> {
    let established = |c: &StateCounts| c.get(probe::TcpState::Established);
    let (t_ms, peak) =
        p.samples.iter().map(|s| (s.t_ms, established(&s.client))).max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
    (peak > established(&p.census.client)).then_some((t_ms, peak))
}

/// The phase's achieved rate, as this report writes rates.
fn rate(p: &PhaseReport) -> String {
    format::rate(p.achieved_rate_per_s, Digits::Plain)
}

fn states(c: &StateCounts) -> String {
    let listed: Vec<String> = c.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {n}", s.key())).collect();
    if listed.is_empty() {
        "no sockets".to_string()
    } else {
        listed.join(", ")
    }
}

fn latency_table(out: &mut String, p: &PhaseReport) {
    if p.latency_us.measured().next().is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "  latency  {:<10}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, l) in p.latency_us.measured() {
        let _ = writeln!(out, "           {name:<10}{:>8}{}", l.count, percentiles(l));
    }
}

/// The phase's traffic: subscriptions, messages published and delivered, and their
/// latencies in the latency table's columns.
fn messages(out: &mut String, p: &PhaseReport) {
    let Some(m) = &p.messages else { return };
    let refused = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter().map(|(k, n)| format!(" {k} {n}")).collect::<String>()
    };
    if m.subscribed + m.subscribe_timed_out > 0 || !m.subscribe_refused.is_empty() {
        let _ = writeln!(
            out,
            "  messages subscribed {}, refused{} {}, timed out {}",
            m.subscribed,
            refused(&m.subscribe_refused),
            m.subscribe_refused.values().sum::<u64>(),
            m.subscribe_timed_out
        );
    }
    if m.published + m.delivered + m.duplicated + m.foreign > 0 {
        let _ = writeln!(
            out,
            "  messages published {}, acknowledged {}, expected {}, delivered {}, lost {}, duplicated {}, out of order {}{}{}",
            m.published,
            m.acknowledged,
            m.expected,
            m.delivered,
            m.lost,
            m.duplicated,
            m.out_of_order,
            if m.ack_timed_out + m.unsent > 0 {
                format!(", unacknowledged {}, unsent {}", m.ack_timed_out, m.unsent)
            } else {
                String::new()
            },
            if m.publish_refused.is_empty() { String::new() } else { format!(", refused{}", refused(&m.publish_refused)) },
        );
    }
    let l = &m.latency_us;
    for (name, summary) in
        [("suback", &l.suback), ("puback", &l.puback), ("pubcomp", &l.pubcomp), ("delivery", &l.delivery)]
    {
        if summary.count > 0 {
            let _ = writeln!(out, "           {name:<10}{:>8}{}", summary.count, percentiles(summary));
        }
    }
}

/// The lost connections and their way back: `recovery lost 300, back 300; p50 .. p99 ..
/// max ..; peak 240/s; last back at 12.3s`, then the refused attempts.
fn recovery(out: &mut String, p: &PhaseReport) {
    let Some(r) = &p.recovery else { return };
    let mut line = format!("  recovery lost {}", r.lost);
    if !r.lost_by.is_empty() {
        let by: Vec<String> = r.lost_by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(line, " ({})", by.join(", "));
    }
    let _ = write!(line, ", back {}", r.recovered);
    if r.down_at_end > 0 {
        let _ = write!(line, ", {} still down", r.down_at_end);
    }
    if let Some(why) = p.unobserved.get(crate::report::unobserved::latency(crate::expect::LatencyKind::Recovery)) {
        let _ = write!(line, "; times unobserved: {why}");
    } else if r.recovery_us.count > 0 {
        let t = &r.recovery_us;
        let _ = write!(line, "; p50 {} p99 {} max {}", micros(t.p50), micros(t.p99), micros(t.max));
    }
    if r.recovered > 0 {
        let _ = write!(line, "; peak {}/s", r.peak_reconnect_rate_per_s);
    }
    if let Some(ms) = r.last_back_ms {
        let _ = write!(line, "; last back at {:.1}s", ms as f64 / 1000.0);
    }
    let _ = writeln!(out, "{line}");
    if !r.refusals.is_empty() {
        let refused: Vec<String> = r.refusals.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  refusals {} (failed reconnect attempts)", refused.join(", "));
    }
}

fn percentiles(l: &LatencySummary) -> String {
    [l.p50, l.p90, l.p99, l.p999, l.max].iter().map(|v| format!("{:>10}", micros(*v))).collect()
}

fn expectation(e: &ExpectationResult) -> String {
    let mark = match (e.deferred, e.passed) {
        (true, _) => "··· ",
        (false, true) => "ok  ",
        (false, false) => "FAIL",
    };
    if let (None, Some(why)) = (e.actual, &e.reason) {
        let implicit = if e.implicit { " (default)" } else { "" };
        let mark = if e.deferred { "··· " } else { "FAIL" };
        return format!("{mark} {}{implicit}: unobserved: {why}", e.expr);
    }
    let actual = match e.actual {
        None => "not measured".to_string(),
        Some(v) if e.unit == "us" => micros(v as u64),
        Some(v) if e.unit == "per_s" => format!("{}/s", format::rate(v, Digits::Plain)),
        Some(v) if e.unit == "bytes" => bytes(v as u64),
        Some(v) if e.unit == "percent" => format!("{v:.1}%"),
        Some(v) => format!("{v}"),
    };
    let implicit = if e.implicit { " (default)" } else { "" };
    let whose = if e.deferred { "this shard's share" } else { "actual" };
    format!("{mark} {}{implicit}: {whose} {actual}", e.expr)
}

/// One event of a phase, in a line: its kind, what ran, when, how it ended.
fn event_line(e: &EventReport) -> String {
    let at = format!("at {:.1}s, took {:.2}s", e.started_ms as f64 / 1000.0, e.duration_ms as f64 / 1000.0);
    let how = match (&e.error, e.exit_status) {
        (Some(why), _) => format!("FAILED: {why}"),
        (None, Some(code)) => format!("ok (exit {code})"),
        (None, None) => "ok".to_string(),
    };
    let mut line = format!("{} `{}` {at}: {how}", e.kind, e.what);
    if let Some(last) = e.output_tail.lines().last().filter(|_| !e.ok || e.kind == "fault") {
        let _ = write!(line, " — {last}");
    }
    printable(&line).into_owned()
}

fn verdict(out: &mut String, r: &RunReport) {
    let failures: Vec<_> = r.failures().collect();
    let checked = r.judged();
    out.push('\n');
    let outcome = match r.outcome {
        crate::report::Outcome::Completed => "",
        crate::report::Outcome::Interrupted => " (interrupted)",
        crate::report::Outcome::Failed => " (a worker or shard failed)",
    };
    let deferred: usize = r.phases.iter().map(|p| p.expectations.len()).sum::<usize>() - checked;
    if let (true, Some(shard)) = (r.passed, &r.shard) {
        let _ = writeln!(
            out,
            "SHARD {}/{} DONE: {} phases ran; {deferred} expectations are judged by `sockcap merge`",
            shard.index,
            shard.count,
            r.phases.len()
        );
    } else if let Some(why) = &r.invalid {
        let _ = writeln!(out, "INVALID{outcome}: {why}");
        for (phase, e) in failures {
            let _ = writeln!(out, "  phase {}: {}", printable(phase), expectation(e));
        }
    } else if r.passed {
        let _ = writeln!(out, "PASSED{outcome}: {} phases, {checked} expectations held", r.phases.len());
    } else if failures.is_empty() && r.failed_events().next().is_some() {
        let _ = writeln!(out, "FAILED{outcome}: {} events failed", r.failed_events().count());
    } else if failures.is_empty() {
        let _ = writeln!(out, "{}{outcome}: {} phases ran", r.verdict_word(), r.phases.len());
    } else {
        let _ = writeln!(out, "FAILED{outcome}: {} of {checked} expectations failed", failures.len());
        for (phase, e) in failures {
            let _ = writeln!(out, "  phase {}: {}", printable(phase), expectation(e));
        }
    }
    for (phase, e) in r.failed_events() {
        let _ = writeln!(out, "  phase {}: event {}", printable(phase), event_line(e));
    }
    for note in &r.notes {
        let _ = writeln!(out, "note: {}", printable(note));
    }
}
