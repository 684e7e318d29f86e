//! The TCP state lab: TIME_WAIT exhaustion reproduced in a private network namespace,
//! each mitigation removing it; a run that needs a namespace and may not make one exits 3.

use std::path::Path;

use serde_json::Value;

use crate::support::{assert_exit, phase, report, run, TempDir};

/// True when this process may create network namespaces (root). Tests that need one
/// print that they are skipped and return early: reported as skipped, not as proof.
pub fn can_make_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: not root, cannot create a network namespace");
    }
    root
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name).display().to_string()
}

fn exhaustion(phase: &Value) -> &Value {
    &phase["exhaustion"]
}

#[test]
fn time_wait_exhaustion_is_reproduced_and_each_mitigation_removes_it() {
    if !can_make_netns() {
        return;
    }
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
    let time_wait = e["time_wait"].as_u64().unwrap();
    assert!((490..=500).contains(&time_wait), "TIME_WAIT at exhaustion {time_wait}");
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
    // tcp_tw_reuse = 1 does not prevent the wall, but ports come back after about a second.
    let reuse = phase(&report, "mitigation: tcp_tw_reuse = 1");
    let recovered = exhaustion(reuse)["recovered_after_ms"].as_u64().expect("ports came back");
    assert!((300..=1_500).contains(&recovered), "recovered after {recovered} ms");
    assert!(reuse["kernel"]["TWRecycled"].as_i64().unwrap_or(0) > 0, "{}", reuse["kernel"]);
}

#[test]
fn netns_without_privilege_exits_3_saying_why() {
    if !can_make_netns() {
        return;
    }
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
    let dir = TempDir::new("sysctl-no-netns");
    let file = dir.file(
        "s.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[[phase]]\nsysctl = { tcp_tw_reuse = 0 }\nsleep = \"1s\"\n",
    );
    let out = run(&["run", file.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("add a [netns] section"));
    let file = dir.file(
        "t.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[netns]\nsysctl = { \"fs.file-max\" = 1 }\n[[phase]]\nsleep = \"1s\"\n",
    );
    let out = run(&["run", file.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only net.* sysctls"));
}
