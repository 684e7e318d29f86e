//! A small, complete [`RunReport`] for the unit tests of the report views
//! (junit, compare): two phases, real serialized histograms.

use std::collections::BTreeMap;

use probe::{Limits, SockStat, StateCounts, TcpState};

use serde_json::{json, Value};

use super::*;
use crate::failure::ErrorKind;
use crate::latency::{Latency, LatencySummary};

/// A histogram summary of `count` samples spread evenly over `low..=high` µs.
pub fn latency(count: u64, low: u64, high: u64) -> LatencySummary {
    let mut l = Latency::new();
    for i in 0..count {
        l.record_us(low + (high - low) * i / count.max(2).saturating_sub(1));
    }
    l.summary()
}

fn census(established: u64, listen: u64) -> StateCounts {
    let mut c = StateCounts::default();
    c.add_n(TcpState::Established, established);
    c.add_n(TcpState::Listen, listen);
    c
}

fn phase(name: &str, kind: &str, started_ms: u64, expectations: Value) -> Value {
    let connect = kind == "connect";
    let ops = if connect { 5000 } else { 0 };
    let empty = Latency::new().summary();
    let (c, h) =
        if connect { (latency(5000, 100, 1000), latency(5000, 200, 2000)) } else { (empty.clone(), empty.clone()) };
    let errors: BTreeMap<&str, u64> = ErrorKind::ALL.iter().map(|k| (k.key(), 0)).collect();
    json!({
        "name": name, "kind": kind, "started_ms": started_ms, "duration_ms": 1500,
        "planned": ops, "attempted": ops, "succeeded": ops,
        "achieved_rate_per_s": if connect { 3333.3 } else { 0.0 },
        "open_at_end": 5000, "drops": 0,
        "census": { "client": census(5000, 0), "server": census(5000, 1) },
        "samples": [],
        "latency_us": { "connect": c, "handshake": h, "close": empty },
        "errors": errors, "other_errnos": {}, "kernel": {},
        "sockstat": SockStat::default(),
        "expectations": expectations,
    })
}

fn expectation(expr: &str, actual: f64, unit: &str, implicit: bool) -> Value {
    json!({ "expr": expr, "actual": actual, "unit": unit, "passed": true, "implicit": implicit })
}

/// A passed run: `ramp` (connect 5000) then `hold`; scenario name `a.b <test>`.
/// Built from JSON, so fields added later with `#[serde(default)]` need no change here.
pub fn sample_report() -> RunReport {
    let report = json!({
        "schema": SCHEMA, "sockcap_version": "0.1.0", "passed": true, "outcome": "completed",
        "scenario": {
            "name": "a.b <test>", "file": "scenarios/test.toml", "target": "127.0.0.1:1883",
            "embedded_target": true, "protocol": "mqtt", "sources": [],
        },
        "started_at": "2026-01-02T03:04:05.000Z", "duration_ms": 3000,
        "limits": {
            "nofile_soft_before": 1024, "nofile_soft_after": 20000, "nofile_hard": 20000,
            "descriptors_needed": 5100, "in_force": Limits::default(),
        },
        "probe_backend": "sock_diag", "probe_warning": null, "notes": [],
        "phases": [
            phase("ramp", "connect", 0, json!([
                expectation("established >= 5000", 5000.0, "count", false),
                expectation("connect_p99 < 20ms", 850.0, "us", false),
            ])),
            phase("hold", "hold", 1500, json!([expectation("errors == 0", 0.0, "count", true)])),
        ],
    });
    serde_json::from_value(report).expect("the sample report matches RunReport")
}
