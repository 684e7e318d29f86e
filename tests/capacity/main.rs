//! Capacity tests: runs large enough to need several worker processes, several source
//! addresses and a multi-process embedded target. A test binary of their own, so that
//! they run after the end-to-end tests rather than beside them, and load nothing else.

#[path = "../e2e/support.rs"]
#[allow(dead_code)] // shared with the end-to-end tests
mod support;

use std::time::Duration;

use support::{
    assert_gone, census, embedded_port, phase, raise_nofile, report, start_run, wait_for_established, wait_for_workers,
    wait_with_timeout, TempDir,
};

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
