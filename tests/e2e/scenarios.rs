//! Every scenario file parses, and bad scenarios fail with exit 2 and a message
//! naming the file, the field and the fix.

use std::path::Path;

use sockcap::plan::Plan;

use crate::preflight::thousands;
use crate::support::{assert_exit, refused_scenario, run, run_with_nofile, TempDir};

#[test]
fn every_scenario_file_parses() {
    let mut seen = 0;
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "expected at least quickstart, mqtt-ramp and close-modes, found {seen}");
}

#[test]
fn unknown_key_exits_2_naming_file_and_key() {
    let stderr = refused_scenario(
        "bad-key.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n[[phase]]\nconect = { count = 1, rate = 1 }\n",
    );
    assert!(stderr.contains("bad-key.toml"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(stderr.contains("unknown field `conect`"), "{stderr}");
}

#[test]
fn bad_value_exits_2_naming_field_and_fix() {
    let stderr = refused_scenario(
        "bad-value.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n[[phase]]\nhold = \"ten seconds\"\n",
    );
    assert!(stderr.contains("field `phase[0].hold`"), "{stderr}");
    assert!(stderr.contains("write e.g. \"30s\""), "{stderr}");
}

#[test]
fn bad_target_override_exits_2() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let out = run(&["run", scenario.to_str().unwrap(), "--target", "broker.example"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target"));
}

#[test]
fn a_run_the_machine_cannot_hold_exits_3_before_connecting() {
    let dir = TempDir::new("too-many");
    let big = |count: u64| {
        format!("name = \"x\"\ntarget = \"127.0.0.1:9\"\nprotocol = \"tcp\"\n[[phase]]\nconnect = {{ count = {count}, rate = 1000 }}\n")
    };
    // More loopback connections than this machine's memory holds: each costs two kernel
    // sockets of more than 5 KB, so one per 5 KB available is twice too many.
    let count = (mem_available() / 5_000).div_ceil(1_000_000).max(5) * 1_000_000;
    let file = dir.file("big.toml", &big(count));
    let out = run(&["run", file.to_str().unwrap()]);
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("memory: {} connections", thousands(count))), "{stderr}");
    assert!(stderr.contains("Fix: lower the connect counts"), "{stderr}");
    // 5,000 connections in one forced process exceed its descriptors, run under a limit
    // of 4,096 (whatever the runner's).
    let file = dir.file("one.toml", &big(5_000));
    let out = run_with_nofile(&["run", file.to_str().unwrap(), "--workers", "1"], 4_096);
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("descriptors:") && stderr.contains("--workers"), "{stderr}");
}

/// MemAvailable of this machine, bytes.
fn mem_available() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:")).expect("MemAvailable in /proc/meminfo");
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().expect("MemAvailable in kB") * 1024
}

#[test]
fn a_report_path_in_a_missing_directory_exits_2_before_the_run() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/states/established.toml");
    let out = run(&["run", scenario.to_str().unwrap(), "--json", "/nonexistent-sockcap-dir/out.json"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--json") && stderr.contains("does not exist"), "{stderr}");
    // Refused before the run: no report was printed.
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}
