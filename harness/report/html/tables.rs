//! The page's tables, which read without the script: phases, latency percentiles,
//! events, errors by kind, limits and sysctls in force, kernel counters.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use probe::StateCounts;

use crate::latency::LatencySummary;
use crate::report::format::{self, micros, seconds, signed_thousands, thousands, Digits};
use crate::report::markup::Escaped;
use crate::report::{unobserved, PhaseReport, RunReport};

pub(super) fn phase_table(out: &mut String, r: &RunReport) {
    out.push_str(
        "<section id=\"phases\"><h2>Phases</h2>\n<div class=\"scroll\"><table class=\"num\">\n<thead><tr>\
         <th>#</th><th class=\"l\">phase</th><th class=\"l\">kind</th><th>start</th><th>duration</th>\
         <th>planned</th><th>done</th><th>rate</th><th>errors</th><th>drops</th><th>open at end</th>\
         <th class=\"l\">census at end</th><th>expectations</th></tr></thead>\n<tbody>\n",
    );
    for (i, p) in r.phases.iter().enumerate() {
        let errors: u64 = crate::failure::error_total(&p.errors);
        let held = p.expectations.iter().filter(|e| e.passed || e.deferred).count();
        let all = p.expectations.len();
        let class = if held == all { "pass" } else { "fail" };
        let rate = if matches!(p.kind.as_str(), "connect" | "close" | "churn") {
            format!("{}/s", format::rate(p.achieved_rate_per_s, Digits::Grouped))
        } else {
            "–".to_string()
        };
        // A census that failed is no reading: say so, not "no sockets".
        let side = |figure: &str, c: &StateCounts| match p.unobserved.get(figure) {
            Some(why) => format!("<span class=\"bad\">unobserved: {}</span>", Escaped(why)),
            None => states(c),
        };
        let mut census = format!("client: {}", side(unobserved::CENSUS_CLIENT, &p.census.client));
        if let Some(server) = &p.census.server {
            let _ = write!(census, "<br/>server: {}", side(unobserved::CENSUS_SERVER, server));
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"l\"><b>{}</b></td><td class=\"l\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{rate}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td>\
             <td class=\"l small\">{census}</td><td><span class=\"badge {class}\">{held}/{all}</span></td></tr>",
            i + 1,
            Escaped(&p.name),
            Escaped(&p.kind),
            seconds(p.started_ms),
            seconds(p.duration_ms),
            thousands(p.planned),
            thousands(p.succeeded),
            if errors > 0 { "bad" } else { "" },
            thousands(errors),
            if p.drops > 0 { "bad" } else { "" },
            thousands(p.drops),
            thousands(p.open_at_end),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn states(c: &StateCounts) -> String {
    let listed: Vec<String> =
        c.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {}", s.key(), thousands(n))).collect();
    if listed.is_empty() {
        "no sockets".to_string()
    } else {
        listed.join(", ")
    }
}

pub(super) fn latency_section(out: &mut String, r: &RunReport) {
    let rows: Vec<(&PhaseReport, &str, &LatencySummary)> =
        r.phases.iter().flat_map(|p| p.latency_us.measured().map(move |(name, l)| (p, name, l))).collect();
    out.push_str("<section id=\"latency\"><h2>Latency percentiles</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"hint\">No phase measured a latency.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<p class=\"hint\">HdrHistogram percentile plots, from each operation's scheduled instant: \
         <b>connect</b> until the TCP connection is established, <b>tls</b> until the TLS handshake is done, <b>handshake</b> until CONNACK, \
         <b>close</b> until the close finished. The x axis is 1/(1−percentile) on a log scale.</p>\n\
         <div class=\"grid2\" id=\"chart-latency\"></div>\n<div class=\"scroll\"><table class=\"num\">\n\
         <thead><tr><th class=\"l\">phase</th><th class=\"l\">latency</th><th>count</th><th>min</th><th>mean</th>\
         <th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead>\n<tbody>\n",
    );
    for (p, name, l) in rows {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Escaped(&p.name),
            thousands(l.count),
            micros(l.min),
            micros(l.mean.round() as u64),
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p999),
            micros(l.max),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// The events the phases ran (`exec`, `fault`, `netem`), a row each; none: no section.
pub(super) fn events_section(out: &mut String, r: &RunReport) {
    if r.phases.iter().all(|p| p.events.is_empty()) {
        return;
    }
    out.push_str(
        "<section id=\"events\"><h2>Events</h2>\n<div class=\"scroll\"><table class=\"num\">\n<thead><tr>\
         <th class=\"l\">phase</th><th class=\"l\">event</th><th class=\"l\">what</th><th>start</th>\
         <th>duration</th><th>exit</th><th class=\"l\">outcome</th><th class=\"l\">output (tail)</th></tr></thead>\n<tbody>\n",
    );
    for (p, e) in r.phases.iter().flat_map(|p| p.events.iter().map(move |e| (p, e))) {
        let outcome = e.error.as_deref().map_or_else(|| "ok".to_string(), |why| format!("failed: {why}"));
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l small\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"l {}\">{}</td><td class=\"l small\"><pre>{}</pre></td></tr>",
            Escaped(&p.name),
            Escaped(&e.kind),
            Escaped(&e.what),
            seconds(e.started_ms),
            seconds(e.duration_ms),
            e.exit_status.map_or_else(|| "–".to_string(), |c| c.to_string()),
            if e.ok { "" } else { "bad" },
            Escaped(&outcome),
            Escaped(&e.output_tail),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

pub(super) fn errors_section(out: &mut String, r: &RunReport) {
    out.push_str("<section id=\"errors\"><h2>Errors by kind</h2>\n");
    let kinds: BTreeSet<&str> =
        r.phases.iter().flat_map(|p| p.errors.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.as_str())).collect();
    if kinds.is_empty() {
        out.push_str("<p class=\"ok-text\">No errors in any phase.</p>\n</section>\n");
        return;
    }
    out.push_str("<div class=\"chart\" id=\"chart-errors\"></div>\n<div class=\"scroll\"><table class=\"num\">\n<thead><tr><th class=\"l\">phase</th>");
    for k in &kinds {
        let _ = write!(out, "<th>{}</th>", Escaped(k));
    }
    out.push_str("<th>other errnos</th></tr></thead>\n<tbody>\n");
    for p in &r.phases {
        let _ = write!(out, "<tr><td class=\"l\">{}</td>", Escaped(&p.name));
        for k in &kinds {
            let n = p.errors.get(*k).copied().unwrap_or(0);
            let _ = write!(out, "<td class=\"{}\">{}</td>", if n > 0 { "bad" } else { "" }, thousands(n));
        }
        let errnos: Vec<String> = p.other_errnos.iter().map(|(e, n)| format!("errno {e}: {n}")).collect();
        let _ = writeln!(out, "<td>{}</td></tr>", Escaped(&errnos.join(", ")));
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

pub(super) fn limits_section(out: &mut String, r: &RunReport) {
    let l = &r.limits;
    let f = &l.in_force;
    let opt = |v: Option<u64>| v.map_or("?".to_string(), thousands);
    let range = f
        .ip_local_port_range
        .map_or("?".to_string(), |(a, b)| format!("{a}–{b} ({} ports)", thousands(u64::from(b.saturating_sub(a)) + 1)));
    let rows: [(&str, String, &str); 11] = [
        (
            "RLIMIT_NOFILE soft",
            format!("{} → {}", thousands(l.nofile_soft_before), thousands(l.nofile_soft_after)),
            "before → after sockcap raised it",
        ),
        ("RLIMIT_NOFILE hard", thousands(l.nofile_hard), "the ceiling for one process"),
        ("descriptors needed", thousands(l.descriptors_needed), "peak connections plus a reserve"),
        ("fs.nr_open", opt(f.nr_open), "the ceiling for any RLIMIT_NOFILE"),
        ("fs.file-max", opt(f.file_max), "open files, machine-wide"),
        ("net.ipv4.ip_local_port_range", range, "ephemeral ports per source address and destination"),
        ("net.ipv4.tcp_tw_reuse", f.tcp_tw_reuse.map_or("?".to_string(), |v| v.to_string()), "2: loopback only"),
        ("net.ipv4.tcp_max_tw_buckets", opt(f.tcp_max_tw_buckets), "TIME_WAIT sockets kept at most"),
        ("net.core.somaxconn", opt(f.somaxconn), "listen backlog ceiling"),
        (
            "net.ipv4.tcp_fin_timeout",
            f.tcp_fin_timeout.map_or("?".to_string(), |v| format!("{v} s")),
            "FIN_WAIT_2 timeout of orphans",
        ),
        ("census backend", r.probe_backend.clone(), ""),
    ];
    out.push_str("<section id=\"limits\"><h2>Limits and sysctls in force</h2>\n<table class=\"kv\">\n<tbody>\n");
    for (k, v, what) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td><td class=\"hint\">{what}</td></tr>", Escaped(&v));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

pub(super) fn kernel_section(out: &mut String, r: &RunReport) {
    let counters: BTreeSet<&str> = r.phases.iter().flat_map(|p| p.kernel.keys().map(String::as_str)).collect();
    if counters.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"kernel\"><h2>Kernel counters</h2>\n<details><summary>Deltas of /proc/net/snmp and \
         /proc/net/netstat per phase (per network namespace: other programs' traffic included)</summary>\n\
         <div class=\"scroll\"><table class=\"num\">\n<thead><tr><th class=\"l\">counter</th>",
    );
    for p in &r.phases {
        let _ = write!(out, "<th>{}</th>", Escaped(&p.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for c in counters {
        let _ = write!(out, "<tr><td class=\"l\">{}</td>", Escaped(c));
        for p in &r.phases {
            match p.kernel.get(c) {
                Some(v) => {
                    let _ = write!(out, "<td>{}{}</td>", if *v > 0 { "+" } else { "" }, signed_thousands(*v));
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n</details>\n</section>\n");
}
