//! `sockcap probe` against sockets held by a running `sockcap run`, checked with `ss`;
//! Ctrl-C (SIGINT) of that run still writes a partial report and exits 130; the
//! target vanishing mid-hold is counted as drops and exits 1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_agree, assert_exit, free_port, phase, report, sockcap, ss_states, wait_for_phase, wait_with_timeout, TempDir,
};

/// `sockcap serve` started by the test; killed on drop.
struct Served {
    port: u16,
    child: Child,
}

impl Served {
    fn start(protocol: &str) -> Served {
        let mut child = sockcap()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--protocol", protocol])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sockcap serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
        let addr = sockcap::embedded::parse_ready_line(line.trim()).unwrap_or_else(|| panic!("ready line: {line}"));
        Served { port: addr.port(), child }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `sockcap run` on a scenario in the background.
fn run_in_background(scenario: &std::path::Path, json: &std::path::Path) -> Child {
    sockcap()
        .args(["run", scenario.to_str().unwrap(), "--json", json.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sockcap run starts")
}

fn hold_scenario(dir: &TempDir, port: u16, clients: u64, hold: &str) -> std::path::PathBuf {
    dir.file(
        "s.toml",
        &format!(
            "name = \"held\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = {clients}, rate = 2000 }}\n\
             [[phase]]\nname = \"hold\"\nhold = \"{hold}\"\n"
        ),
    )
}

fn as_counts(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v.as_object().unwrap().iter().filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n))).collect()
}

#[test]
fn probe_agrees_with_ss_and_ctrl_c_writes_a_partial_report() {
    const CLIENTS: u64 = 1_500;
    let target = Served::start("tcp");
    let dir = TempDir::new("interrupt");
    let json = dir.path("out.json");
    let mut run = run_in_background(&hold_scenario(&dir, target.port, CLIENTS, "60s"), &json);
    wait_for_phase(&mut run, "hold", Duration::from_secs(30));

    let port = target.port;
    let probe = |extra: &[&str]| -> Value {
        let out = sockcap().args(["probe", "--port", &port.to_string(), "--json"]).args(extra).output().unwrap();
        assert_exit(&out, 0);
        serde_json::from_slice(&out.stdout).expect("probe prints JSON")
    };
    assert_agree("probe and ss, local port", || {
        (as_counts(&probe(&[])["local"]), ss_states(&format!("( sport = :{port} )")))
    });
    assert_agree("probe and ss, remote port", || {
        (as_counts(&probe(&[])["remote"]), ss_states(&format!("( dport = :{port} )")))
    });
    let reading = probe(&[]);
    // By port alone: another program's socket may share the port number, as for `ss`.
    assert!(reading["remote"]["established"].as_u64().unwrap() >= CLIENTS, "{reading}");
    assert_eq!(reading["local"]["listen"], 1);
    assert!(reading["top_peers"][0]["sockets"].as_u64().unwrap() >= CLIENTS, "{reading}");

    // The /proc/net/tcp fallback counts the same sockets.
    assert_eq!(probe(&["--proc-net"])["backend"], "proc_net");
    assert_agree("sock_diag and /proc/net/tcp", || {
        (probe(&[])["remote"].clone(), probe(&["--proc-net"])["remote"].clone())
    });

    let pid = run.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    let report = report(&json);
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["passed"], false);
    assert_eq!(phase(&report, "ramp")["succeeded"], CLIENTS);
    assert_eq!(phase(&report, "hold")["census"]["client"]["established"], CLIENTS);
}

#[test]
fn target_vanishing_mid_hold_counts_drops_and_exits_1() {
    const CLIENTS: u64 = 300;
    let mut target = Served::start("tcp");
    let dir = TempDir::new("vanish");
    let json = dir.path("out.json");
    let mut run = run_in_background(&hold_scenario(&dir, target.port, CLIENTS, "5s"), &json);
    wait_for_phase(&mut run, "hold", Duration::from_secs(20));
    target.child.kill().expect("kill our sockcap serve");
    let _ = target.child.wait();
    let status = wait_with_timeout(&mut run, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let report = report(&json);
    let hold = phase(&report, "hold");
    assert_eq!(hold["drops"], CLIENTS);
    let lost = hold["errors"]["closed_by_peer"].as_u64().unwrap() + hold["errors"]["reset"].as_u64().unwrap();
    assert_eq!(lost, CLIENTS);
    assert!(report["notes"].to_string().contains("were lost"));
}

/// A terminal's Ctrl-C reaches the whole foreground process group. The embedded target
/// runs in a group of its own, so the run drains and reports without phantom drops.
#[test]
fn ctrl_c_to_the_process_group_leaves_the_embedded_target_serving() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("ctrl-c-group");
    let scenario = dir.file(
        "s.toml",
        "name = \"held\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = { count = 200, rate = 2000 }\n\
         [[phase]]\nname = \"hold\"\nhold = \"60s\"\n",
    );
    let json = dir.path("out.json");
    let mut run = sockcap()
        .args(["run", scenario.to_str().unwrap(), "--json", json.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("sockcap run starts");
    wait_for_phase(&mut run, "hold", Duration::from_secs(20));
    let pid = run.id();
    assert!(Command::new("kill").args(["-INT", "--", &format!("-{pid}")]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    let report = report(&json);
    let hold = phase(&report, "hold");
    assert_eq!(hold["drops"], 0, "{}", hold["errors"]);
    assert_eq!(hold["census"]["client"]["established"], 200);
}
