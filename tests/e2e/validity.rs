//! The generator is not the bottleneck, or the report says so: a sockcap pinned to one
//! CPU (`taskset -c 0`) and asked for far more connects per second than one core paces
//! falls behind its own schedule past `[validity] lateness_p99 = "100ms"`, and the run is
//! marked invalid (exit 1; exit by the expectations with `--allow-invalid`, still marked).
//! A small run under the default limits is not.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{assert_exit, assert_matches_schema, output_within, phase, report, run_scenario, TempDir};

/// Far above what one core paces: 10,000 connects due within 10 ms, under a deadline.
const TOO_FAST: &str = r#"name = "too fast"
target = "embedded"
protocol = "tcp"

[validity]
lateness_p99 = "100ms"

[[phase]]
name = "ramp"
connect = { count = 10_000, rate = 1_000_000, timeout = "10s" }
"#;

fn pinned_run(tag: &str, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let dir = TempDir::new(tag);
    let file = dir.file("scenario.toml", TOO_FAST);
    let json = dir.path("report.json");
    let mut command = Command::new("taskset");
    command.args(["-c", "0", env!("CARGO_BIN_EXE_sockcap"), "run", file.to_str().unwrap()]);
    command.args(["--json", json.to_str().unwrap(), "--quiet"]).args(extra).stdin(Stdio::null());
    let out = output_within(&mut command, Duration::from_secs(90));
    let report = report(&json);
    (out, report)
}

fn assert_invalid(out: &std::process::Output, report: &serde_json::Value) {
    assert_matches_schema(report);
    assert_eq!(report["verdict"], "invalid", "{report}");
    assert_eq!(report["passed"], false);
    let why = report["invalid"].as_str().unwrap();
    assert!(why.starts_with("the generator was the bottleneck: its schedule ran late: lateness p99"), "{why}");
    assert!(why.contains(" > 100.00ms (phase `ramp`)"), "{why}");
    let ramp = phase(report, "ramp");
    assert!(ramp["latency_us"]["lateness"]["p99"].as_u64().unwrap() > 100_000, "{ramp}");
    assert_eq!(ramp["generator"]["cores"], 1, "taskset -c 0: one core");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("INVALID: the generator was the bottleneck: "), "{text}");
}

#[test]
fn a_generator_pinned_to_one_core_is_invalid() {
    let (out, report) = pinned_run("validity-pinned", &[]);
    assert_exit(&out, 1);
    assert_invalid(&out, &report);
    // Every connection was made: the expectations alone would pass.
    assert!(report["phases"][0]["expectations"].as_array().unwrap().iter().all(|e| e["passed"] == true), "{report}");
}

#[test]
fn allow_invalid_exits_by_the_expectations_and_still_marks_the_run() {
    let (out, report) = pinned_run("validity-allowed", &["--allow-invalid"]);
    assert_exit(&out, 0);
    assert_invalid(&out, &report);
}

#[test]
fn a_small_run_is_valid_and_its_generator_measured() {
    let toml = r#"name = "small"
target = "embedded"
protocol = "mqtt"

[[phase]]
name = "ramp"
connect = { count = 200, rate = 1000 }
expect = { lateness_p99 = "< 1s", "sockcap.cpu" = "< 90%" }
"#;
    let (out, report) = run_scenario("validity-small", toml, &[]);
    assert_exit(&out, 0);
    assert_matches_schema(&report);
    assert_eq!(report["verdict"], "passed");
    assert!(report.get("invalid").is_none(), "{report}");
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["latency_us"]["lateness"]["count"], 200);
    let generator = &ramp["generator"];
    // Read, in 10 ms clock ticks (a fast runner may spend less than one on this ramp).
    assert!(generator["cpu_seconds"].as_f64().is_some_and(|s| s >= 0.0), "{generator}");
    assert_eq!(generator["ports_in_use"], 200, "{generator}");
    assert!(generator["port_budget"].as_u64().unwrap() >= 200, "{generator}");
    assert!(ramp["expectations"].as_array().unwrap().iter().all(|e| e["actual"].is_number()), "{ramp}");
}

/// The CPU limit: pinned to one core, 3,000 connects over 1.5 s take sockcap more than 1 %
/// of it (about 20 % measured on a debug build).
#[test]
fn a_cpu_share_past_its_limit_marks_the_run_invalid() {
    let dir = TempDir::new("validity-cpu");
    let file = dir.file(
        "scenario.toml",
        "name = \"busy\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[validity]\ncpu = \"1%\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = { count = 3000, rate = 2000 }\n",
    );
    let json = dir.path("report.json");
    let mut command = Command::new("taskset");
    command.args(["-c", "0", env!("CARGO_BIN_EXE_sockcap"), "run", file.to_str().unwrap()]);
    command.args(["--json", json.to_str().unwrap(), "--quiet"]).stdin(Stdio::null());
    let out = output_within(&mut command, Duration::from_secs(90));
    assert_exit(&out, 1);
    let report = report(&json);
    let why = report["invalid"].as_str().unwrap();
    assert!(why.contains("its CPU was saturated") && why.contains("of 1 cores > 1%"), "{why}");
    assert!(phase(&report, "ramp")["generator"]["cpu_percent"].as_f64().unwrap() > 1.0);
}

#[test]
fn validity_limits_are_checked() {
    let bad = "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[validity]\ncpu = \"250%\"\n\
               [[phase]]\nname = \"p\"\nconnect = { count = 1, rate = 1 }\n";
    let stderr = crate::support::refused_scenario("bad-validity.toml", bad);
    assert!(stderr.contains("validity.cpu") && stderr.contains("250%"), "{stderr}");
    let tight = "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[validity]\nlateness_p99 = \"1us\"\n\
                 [[phase]]\nname = \"p\"\nconnect = { count = 50, rate = 1000 }\n";
    let (out, report) = run_scenario("validity-tight", tight, &[]);
    assert_exit(&out, 1);
    assert!(report["invalid"].as_str().unwrap().contains("> 1µs"), "{report}");
}
