//! Capacity tests: runs large enough to need several worker processes, several source
//! addresses and a multi-process embedded target. A test binary of their own: cargo runs test
//! binaries one after another, so these never load the machine beside the end-to-end tests.

#[path = "../e2e/support.rs"]
#[allow(dead_code)] // shared with the end-to-end tests
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    assert_gone, census, embedded_port, phase, report, start_run_with_nofile, wait_for_workers, wait_with_timeout,
    TempDir,
};

/// The descriptor limit the capacity runs are given, whatever the runner's: 30,000
/// connections then need exactly two client workers and two target processes.
const NOFILE: u64 = 20_000;

#[test]
fn thirty_thousand_connections_over_workers_and_sources_merge_exactly() {
    const N: u64 = 30_000;
    let dir = TempDir::new("workers-30k");
    let toml = format!(
        "name = \"30k\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {N}, rate = 10000 }}\n\
         expect = {{ established = \"== {N}\" }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"8s\"\nexpect = {{ established = \"== {N}\" }}\n"
    );
    let (mut run, json) = start_run_with_nofile(&dir, &toml, &[], NOFILE);
    // Past one process's 19,900 descriptors (of NOFILE): `--workers auto` takes two.
    let workers = wait_for_workers(run.id(), 2);
    // During the hold, `ss` sees every connection, from two or more source addresses.
    let port = embedded_port(run.id());
    let seen = established_sources(port, N, Duration::from_secs(30));
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let report = report(&json);
    assert_eq!(status.code(), Some(0), "notes: {}", report["notes"]);
    assert_gone(&workers, Duration::from_secs(5));
    let seen = seen.unwrap_or_else(|n| panic!("ss saw at most {n} of {N} established; report: {}", report["phases"]));
    assert!(seen.len() >= 2, "client sources seen by ss: {seen:?}");

    assert_eq!(report["scenario"]["workers"], 2);
    assert_eq!(report["scenario"]["sources"].as_array().unwrap().len(), seen.len());
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], N);
    assert_eq!(census(ramp, "client", "established"), N);
    assert_eq!(census(ramp, "server", "established"), N);
    // The merged histograms hold every worker's samples.
    assert_eq!(ramp["latency_us"]["connect"]["count"], N);
    assert_eq!(ramp["latency_us"]["handshake"]["count"], N);
    // The embedded target spread over two processes as well.
    assert_eq!(ramp["target_fds"]["processes"], 2);
    let hold = phase(&report, "hold");
    assert_eq!(census(hold, "client", "established"), N);
    assert_eq!(census(hold, "server", "established"), N);
}

/// Poll `ss` until it sees `n` established client sockets toward the embedded target
/// (127.0.0.1:`port`) from the run's source addresses (127.0.0.2 and up: a socket from
/// 127.0.0.1 with that peer is another program's server side): their source addresses,
/// or the most it saw when `within` passes first.
fn established_sources(port: u16, n: u64, within: Duration) -> Result<BTreeSet<String>, u64> {
    let deadline = Instant::now() + within;
    let mut most = 0;
    while Instant::now() < deadline {
        let ss = Command::new("ss")
            .args(["-Htan", "state", "established", &format!("( dst 127.0.0.1:{port} )")])
            .output()
            .expect("ss runs");
        let text = String::from_utf8_lossy(&ss.stdout);
        let sources: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.rsplit_once(':').map(|(ip, _)| ip.to_string()))
            .filter(|ip| ip != "127.0.0.1")
            .collect();
        if sources.len() as u64 == n {
            return Ok(sources.into_iter().collect());
        }
        most = most.max(sources.len() as u64);
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(most)
}
