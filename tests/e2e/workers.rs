//! Runs split over worker processes, merged into one report whose census agrees with
//! `ss` (30,000 connections are in the capacity tests); a worker that dies is named and the run
//! ends with exit 1; Ctrl-C stops every worker. No worker outlives its run.

use std::time::Duration;

use crate::support::{
    assert_exit, assert_gone, census, phase, report, run, ss_states, start_run, wait_for_phase, wait_for_workers,
    wait_with_timeout, TempDir,
};

#[test]
fn a_worker_that_dies_is_named_and_the_run_ends_with_exit_1() {
    let dir = TempDir::new("worker-dies");
    let toml = "name = \"dies\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 1000, rate = 5000 }\n\
                [[phase]]\nname = \"hold\"\nhold = \"60s\"\n\
                [[phase]]\nname = \"never\"\nhold = \"1s\"\n";
    let (mut run, json) = start_run(&dir, toml, &["--workers", "2"]);
    let workers = wait_for_workers(run.id(), 2);
    // Let the ramp finish: each worker holds its 500.
    wait_for_phase(&mut run, "hold", Duration::from_secs(20));
    assert!(std::process::Command::new("kill").args(["-KILL", &workers[1].to_string()]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    assert_gone(&workers, Duration::from_secs(5));
    let report = report(&json);
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["passed"], false);
    let notes = report["notes"].to_string();
    assert!(notes.contains(&format!("pid {}", workers[1])) && notes.contains("during phase `hold`"), "{notes}");
    // What was measured stays: the ramp of both workers, and the hold up to the death.
    assert_eq!(phase(&report, "ramp")["succeeded"], 1000);
    assert_eq!(report["phases"].as_array().unwrap().len(), 2, "no phase runs after a worker died");
    // The dead worker's share of the hold was never reported: its counts are unobserved,
    // and `errors == 0` does not pass on the survivor's alone.
    let hold = phase(&report, "hold");
    let why = hold["unobserved"]["operations"].as_str().unwrap_or_else(|| panic!("{hold}"));
    assert!(why.contains(&format!("pid {}) sent no report of this phase", workers[1])), "{why}");
    let errors = &hold["expectations"][0];
    assert_eq!(
        (&errors["expr"], &errors["passed"], &errors["reason"]),
        (&"errors == 0".into(), &false.into(), &why.into())
    );
}

#[test]
fn ctrl_c_stops_every_worker_and_keeps_what_they_measured() {
    let dir = TempDir::new("workers-ctrl-c");
    let toml = "name = \"interrupted\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 900, rate = 3000 }\n\
                [[phase]]\nname = \"hold\"\nhold = \"60s\"\n";
    let (mut run, json) = start_run(&dir, toml, &["--workers", "3"]);
    let workers = wait_for_workers(run.id(), 3);
    wait_for_phase(&mut run, "hold", Duration::from_secs(20));
    assert!(std::process::Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert_gone(&workers, Duration::from_secs(5));
    let report = report(&json);
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["scenario"]["workers"], 3);
    let hold = phase(&report, "hold");
    assert_eq!(census(hold, "client", "established"), 900, "the census is taken before the workers close");
    assert_eq!(phase(&report, "ramp")["latency_us"]["handshake"]["count"], 900);
}

#[test]
fn forced_workers_split_every_phase_exactly() {
    // 3 workers, 1000 connections: 334 + 333 + 333, closed by count then all.
    let dir = TempDir::new("workers-split");
    let toml = "name = \"split\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 1000, rate = 5000 }\n\
                [[phase]]\nname = \"close some\"\nclose = { how = \"rst\", rate = 5000, count = 100 }\n\
                expect = { established = \"== 900\" }\n\
                [[phase]]\nname = \"close rest\"\nclose = { how = \"fin\", rate = 5000 }\n";
    let (mut run, json) = start_run(&dir, toml, &["--workers", "3"]);
    let status = wait_with_timeout(&mut run, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let report = report(&json);
    assert_eq!(report["scenario"]["workers"], 3);
    let ramp = phase(&report, "ramp");
    assert_eq!((ramp["planned"].as_u64(), ramp["succeeded"].as_u64()), (Some(1000), Some(1000)));
    let some = phase(&report, "close some");
    assert_eq!(some["succeeded"], 100);
    assert_eq!(census(some, "client", "established"), 900);
    let rest = phase(&report, "close rest");
    assert_eq!(rest["succeeded"], 900);
    // Every client closed first: TIME_WAIT on the client side for each, as `ss` agrees.
    let port: u16 = report["scenario"]["target"].as_str().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
    let tw = ss_states(&format!("( dport = :{port} )")).get("time_wait").copied().unwrap_or(0);
    assert!(tw >= 891, "ss sees {tw} TIME_WAIT toward :{port}");
    assert!(census(rest, "client", "time_wait") >= 891);
}

/// A worker process re-reads the scenario file: one that changed since the coordinator
/// read it is refused, not run with other phases than the coordinator's.
#[test]
fn a_worker_refuses_a_scenario_that_changed_under_the_run() {
    let dir = TempDir::new("changed-scenario");
    let file =
        dir.file("s.toml", "name = \"w\"\ntarget = \"127.0.0.1:9\"\nprotocol = \"tcp\"\n[[phase]]\nhold = \"1s\"\n");
    let file = file.to_str().unwrap();
    let base = ["worker", file, "--target", "127.0.0.1:9", "--shard", "0/2", "--ports", "40000-40999"];
    let other = "0".repeat(64);
    let out = run(&[&base[..], &["--scenario-sha256", &other]].concat());
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since the run started"));
}
