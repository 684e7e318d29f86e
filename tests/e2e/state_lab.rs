//! The TCP state lab: TIME_WAIT exhaustion reproduced in a private network namespace,
//! each mitigation removing it; a run that needs a namespace and may not make one exits 3.

use std::path::Path;

use serde_json::Value;

use crate::support::{assert_exit, census, phase, refused_scenario, report, run, TempDir};

/// Tests that need a network namespace of their own are marked
/// `#[cfg_attr(sockcap_not_root, ignore = ...)]`: a build by another user than root (see
/// build.rs) reports them as ignored. Built as root but run as another user, they fail
/// here, saying why, rather than pass without having run.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "needs root to create a network namespace; run as root or see build.rs");
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name).display().to_string()
}

fn exhaustion(phase: &Value) -> &Value {
    &phase["exhaustion"]
}

#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to create a network namespace")]
fn time_wait_exhaustion_is_reproduced_and_each_mitigation_removes_it() {
    require_root();
    let dir = TempDir::new("exhaustion");
    let json = dir.path("out.json");
    let out = run(&["run", &scenario("time-wait-exhaustion.toml"), "--json", json.to_str().unwrap(), "--quiet"]);
    assert_exit(&out, 0);
    let report = report(&json);
    assert_eq!(report["scenario"]["netns"], true);
    // The namespace's own sysctls are what the report shows in force, not the host's.
    assert_eq!(report["limits"]["in_force"]["tcp_tw_reuse"], 0);

    let exhaust = phase(&report, "exhaust");
    let e = exhaustion(exhaust);
    let after = e["after_connections"].as_u64().expect("the ports ran out");
    // 500 ports in the range; the kernel may keep a few back.
    assert!((490..=500).contains(&after), "ran out after {after}");
    // Counted at the first EADDRNOTAVAIL, when the last few closes are still under way
    // (FIN_WAIT): 487 once with two CPU hogs running. The phase's expectation checks
    // time_wait >= 490 at its end.
    let time_wait = e["time_wait"].as_u64().unwrap();
    assert!((450..=500).contains(&time_wait), "TIME_WAIT at exhaustion {time_wait}");
    assert!(census(exhaust, "client", "time_wait") >= 490, "{}", exhaust["census"]);
    assert!(e["after_ms"].as_u64().unwrap() < 1_000);
    assert_eq!(e["recovered_after_ms"], Value::Null, "with tcp_tw_reuse 0 no port comes back");
    let notes = report["notes"].to_string();
    assert!(notes.contains("ran out after"), "{notes}");
    assert!(notes.contains("no port came back"), "{notes}");

    for mitigation in ["mitigation: rst", "mitigation: 10 source addresses", "mitigation: wider port range"] {
        let p = phase(&report, mitigation);
        assert_eq!(exhaustion(p), &Value::Null, "{mitigation}: {}", p["errors"]);
        assert_eq!(p["succeeded"], 2000, "{mitigation}");
    }
    // tcp_tw_reuse = 1 does not prevent the wall, but ports come back within about a
    // second (the oldest TIME_WAIT turns one second old; sooner when a loaded machine
    // took longer than a second to reach the wall), not after 60 s.
    let reuse = phase(&report, "mitigation: tcp_tw_reuse = 1");
    let recovered = exhaustion(reuse)["recovered_after_ms"].as_u64().expect("ports came back");
    assert!(recovered <= 1_500, "recovered after {recovered} ms");
    assert!(reuse["kernel"]["TWRecycled"].as_i64().unwrap_or(0) > 0, "{}", reuse["kernel"]);
}

#[test]
#[cfg_attr(sockcap_not_root, ignore = "needs root to drop to an unprivileged user")]
fn netns_without_privilege_exits_3_saying_why() {
    require_root();
    // Run as `nobody`: unshare(CLONE_NEWNET) is refused.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", env!("CARGO_BIN_EXE_sockcap")])
        .args(["run", &scenario("time-wait-exhaustion.toml"), "--quiet"])
        .output()
        .expect("setpriv (util-linux) runs");
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root or CAP_SYS_ADMIN"), "{stderr}");
}

#[test]
fn sysctls_outside_a_namespace_are_refused_with_exit_2() {
    let stderr = refused_scenario(
        "sysctl-no-netns.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[[phase]]\nsysctl = { tcp_tw_reuse = 0 }\nsleep = \"1s\"\n",
    );
    assert!(stderr.contains("add a [netns] section"), "{stderr}");
    let stderr = refused_scenario(
        "host-sysctl.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[netns]\nsysctl = { \"fs.file-max\" = 1 }\n[[phase]]\nsleep = \"1s\"\n",
    );
    assert!(stderr.contains("only net.* sysctls"), "{stderr}");
}

/// Every scenario under scenarios/states/ produces its state: the run passes (its own
/// expectations hold) and the report's census has the count this table names.
#[test]
#[cfg_attr(sockcap_not_root, ignore = "time-wait-client.toml needs a network namespace (root)")]
fn every_state_scenario_produces_its_state() {
    require_root();
    // (file, phase, side, state, sockets)
    let table: [(&str, &str, &str, &str, u64); 11] = [
        ("syn-sent.toml", "stuck", "client", "syn_sent", 98),
        ("syn-recv.toml", "deferred", "server", "syn_recv", 500),
        ("established.toml", "held", "client", "established", 1000),
        ("fin-wait-1.toml", "stuck", "client", "fin_wait1", 200),
        ("fin-wait-2.toml", "settled", "client", "fin_wait2", 1000),
        ("fin-wait-2.toml", "settled", "server", "close_wait", 1000),
        ("time-wait-client.toml", "client closes first", "client", "time_wait", 1000),
        ("time-wait-server.toml", "disconnect", "server", "time_wait", 1000),
        ("closing.toml", "target's FIN arrives", "client", "closing", 200),
        ("close-wait.toml", "target closed", "client", "close_wait", 500),
        ("last-ack.toml", "stuck", "client", "last_ack", 200),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/states");
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("scenarios/states")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let covered: std::collections::BTreeSet<String> = table.iter().map(|row| row.0.to_string()).collect();
    assert_eq!(files, covered, "every state scenario is checked here, and only those");

    let runs: Vec<_> = covered
        .iter()
        .map(|file| {
            let file = file.clone();
            let path = dir.join(&file);
            std::thread::spawn(move || {
                let tmp = TempDir::new(&format!("state-{file}"));
                let json = tmp.path("out.json");
                let out = run(&["run", path.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet"]);
                assert!(json.exists(), "{file} wrote no report: {}", String::from_utf8_lossy(&out.stderr));
                (file, out, report(&json))
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|r| r.join().expect("run thread")).collect();
    for (file, phase_name, side, state, sockets) in table {
        let (_, out, report) = results.iter().find(|(f, ..)| f == file).unwrap();
        assert_exit(out, 0);
        let p = phase(report, phase_name);
        assert_eq!(p["census"][side][state], sockets, "{file}: {side} {state} in {}", p["census"]);
    }
}
