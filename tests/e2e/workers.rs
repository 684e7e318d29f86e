//! Runs past one process: worker processes and several source addresses, merged into
//! one report whose census agrees with `ss`; a worker that dies is named and the run
//! ends with exit 1; Ctrl-C stops every worker. No worker outlives its run.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::{
    census, phase, raise_nofile, report, sockcap, ss_states, wait_for_established, wait_with_timeout, TempDir,
};

/// The children of process `pid` running `sockcap <command>`.
fn children_running(pid: u32, command: &str) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    children.retain(|c| {
        let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).nth(1) == Some(command.as_bytes())
    });
    children
}

/// Wait until none of `pids` exists any more (a zombie still counts as existing).
fn assert_gone(pids: &[u32], within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while pids.iter().any(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) {
        assert!(std::time::Instant::now() < deadline, "worker processes {pids:?} outlived the run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_run(dir: &TempDir, toml: &str, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let scenario = dir.file("s.toml", toml);
    let json = dir.path("out.json");
    let child = sockcap()
        .args(["run", scenario.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sockcap run starts");
    (child, json)
}

/// Wait for the run's workers to appear.
fn wait_for_workers(run: u32, n: usize) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let workers = children_running(run, "worker");
        if workers.len() == n {
            return workers;
        }
        assert!(std::time::Instant::now() < deadline, "saw workers {workers:?}, want {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn thirty_thousand_connections_over_workers_and_sources_merge_exactly() {
    raise_nofile();
    const N: u64 = 30_000;
    let dir = TempDir::new("workers-30k");
    let toml = format!(
        "name = \"30k\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {N}, rate = 10000 }}\n\
         expect = {{ established = \"== {N}\" }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"30s\"\n"
    );
    let (mut run, json) = start_run(&dir, &toml, &[]);
    // Past one process's 19,900 descriptors: `--workers auto` takes two.
    let workers = wait_for_workers(run.id(), 2);
    // While the run holds them, `ss` sees every connection, from two or more sources.
    let port = embedded_port(run.id());
    wait_for_established(port, N, Duration::from_secs(60));
    let ss = std::process::Command::new("ss")
        .args(["-Htan", "state", "established", &format!("( dport = :{port} )")])
        .output()
        .unwrap();
    let sources: std::collections::BTreeSet<String> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).and_then(|a| a.rsplit_once(':')).map(|(ip, _)| ip.to_string()))
        .collect();
    assert!(sources.len() >= 2, "client sources seen by ss: {sources:?}");
    assert!(std::process::Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    assert_gone(&workers, Duration::from_secs(5));

    let report = report(&json);
    assert_eq!(report["scenario"]["workers"], 2);
    assert!(report["scenario"]["sources"].as_array().unwrap().len() >= 2);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], N);
    assert_eq!(census(ramp, "client", "established"), N);
    assert_eq!(census(ramp, "server", "established"), N);
    // The merged histograms hold every worker's samples.
    assert_eq!(ramp["latency_us"]["connect"]["count"], N);
    assert_eq!(ramp["latency_us"]["handshake"]["count"], N);
    assert_eq!(ramp["expectations"][0]["passed"], true);
    let hold = phase(&report, "hold");
    assert_eq!(census(hold, "client", "established"), N);
}

/// The port the run's embedded target (its `sockcap serve` child) listens on.
fn embedded_port(run: u32) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(serve) = children_running(run, "serve").first() {
            let out = std::process::Command::new("ss").args(["-Htlnp"]).output().unwrap();
            let port = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&format!("pid={serve},")))
                .find_map(|l| l.split_whitespace().nth(3)?.rsplit_once(':')?.1.parse::<u16>().ok());
            if let Some(port) = port {
                return port;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the run's embedded target does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    std::thread::sleep(Duration::from_millis(1500));
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
}

#[test]
fn ctrl_c_stops_every_worker_and_keeps_what_they_measured() {
    let dir = TempDir::new("workers-ctrl-c");
    let toml = "name = \"interrupted\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 900, rate = 3000 }\n\
                [[phase]]\nname = \"hold\"\nhold = \"60s\"\n";
    let (mut run, json) = start_run(&dir, toml, &["--workers", "3"]);
    let workers = wait_for_workers(run.id(), 3);
    std::thread::sleep(Duration::from_millis(1500));
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
