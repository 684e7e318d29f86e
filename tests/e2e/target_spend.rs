//! What the target spends: a real mosquitto and the embedded target, each holding 500
//! clients, have their RSS per connection, CPU and both sides' kernel memory measured and
//! judged; a target in another network namespace (another machine, to sockcap) fails its
//! `target.*` expectations as unobserved instead of passing on zeros.

use std::time::Duration;

use serde_json::Value;

use crate::netlab::{Lab, LabServe};
use crate::support::{assert_exit, assert_matches_schema, phase, report, run_scenario, Mosquitto, TempDir};

const CLIENTS: u64 = 500;

fn scenario(target: &str) -> String {
    format!(
        r#"name = "spend"
target = "{target}"
protocol = "mqtt"

[[phase]]
name = "ramp"
connect = {{ count = {CLIENTS}, rate = 2000 }}

[[phase]]
name = "held"
hold = "1s"
expect = {{ "target.rss_per_conn" = "< 1MiB", "target.cpu" = "< 90%" }}
"#
    )
}

/// The target's spend and both sides' kernel memory were measured, and the `target.*`
/// expectations judged on them.
fn assert_measured(report: &Value) {
    assert_matches_schema(report);
    let held = phase(report, "held");
    let target = &held["target"];
    assert_eq!(target["processes"], 1, "{target}");
    assert_eq!(target["connections"], CLIENTS, "{target}");
    let rss = target["rss_bytes"].as_u64().unwrap();
    let per_conn = target["rss_per_conn_bytes"].as_u64().unwrap();
    assert!(rss > 1 << 20 && per_conn == rss / CLIENTS, "{target}");
    // The ramp's CPU was read (a number, never left out): /proc counts it in clock ticks
    // of 10 ms, and mosquitto can accept 500 clients in less than one (CI saw 0.0).
    let ramp = &phase(report, "ramp")["target"];
    let cpu = (ramp["cpu_seconds"].as_f64(), ramp["cpu_percent"].as_f64());
    assert!(cpu.0.is_some_and(|s| s >= 0.0) && cpu.1.is_some_and(|p| p >= 0.0), "{ramp}");
    for side in ["client", "server"] {
        let memory = &held["kernel_memory"][side];
        assert!(memory["sockets"].as_u64().unwrap() >= CLIENTS, "{side}: {memory}");
        // At least the sockets' own objects: about 2 KiB each, whatever their buffers hold.
        assert!(memory["bytes"].as_u64().unwrap() >= CLIENTS * 1024, "{side}: {memory}");
    }
    for e in
        held["expectations"].as_array().unwrap().iter().filter(|e| e["expr"].as_str().unwrap().starts_with("target."))
    {
        assert!(e["actual"].as_f64().is_some() && e["passed"] == true, "{e}");
    }
    let unit = |expr: &str| {
        held["expectations"].as_array().unwrap().iter().find(|e| e["expr"] == expr).unwrap()["unit"].clone()
    };
    assert_eq!((unit("target.rss_per_conn < 1MiB"), unit("target.cpu < 90%")), ("bytes".into(), "percent".into()));
}

#[test]
fn mosquitto_spend_is_measured() {
    let broker = Mosquitto::start("spend", "max_connections -1");
    let (out, report) = run_scenario("spend-mosquitto", &scenario(&broker.addr()), &[]);
    assert_exit(&out, 0);
    assert_measured(&report);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("spend    target 1 process: RSS") && text.contains("per connection (500 held)"), "{text}");
}

#[test]
fn embedded_target_spend_is_measured() {
    let (out, report) = run_scenario("spend-embedded", &scenario("embedded"), &[]);
    assert_exit(&out, 0);
    assert_measured(&report);
}

/// The target listens in another network namespace: to sockcap it is another machine,
/// whose processes and sockets it cannot read.
#[test]
fn a_target_elsewhere_fails_target_expectations_as_unobserved() {
    let lab = Lab::new(1, 0);
    let serve = LabServe::start(&lab, 1883);
    let dir = TempDir::new("spend-elsewhere");
    let file = dir.file("scenario.toml", &scenario(&serve.addr.to_string()));
    let json = dir.path("report.json");
    let mut command = lab.command(&lab.hosts[0].netns, env!("CARGO_BIN_EXE_sockcap"));
    command.args(["run", file.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet"]);
    let out = crate::support::output_within(&mut command, Duration::from_secs(60));
    assert_exit(&out, 1);
    let report = report(&json);
    assert_matches_schema(&report);
    let held = phase(&report, "held");
    assert!(held["target"].is_null(), "{held}");
    assert!(held["unobserved"]["target"].as_str().unwrap().contains("is not on this machine"), "{held}");
    assert!(held["kernel_memory"]["server"].is_null() && held["unobserved"]["kernel_memory.server"].is_string());
    assert!(held["kernel_memory"]["client"]["sockets"].as_u64().unwrap() >= CLIENTS, "{held}");
    let target_expectations: Vec<&Value> = held["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["expr"].as_str().unwrap().starts_with("target."))
        .collect();
    assert_eq!(target_expectations.len(), 2);
    for e in target_expectations {
        assert!(e["passed"] == false && e["actual"].is_null(), "{e}");
        assert!(e["reason"].as_str().unwrap().contains("is not on this machine"), "{e}");
    }
}
