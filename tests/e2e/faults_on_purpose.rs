//! Faults on purpose: phase events (`exec`, `fault = { restart_target }`, `netem`) run
//! at a phase's start beside its action, and recorded in the report.
//! - The embedded target restarted during a hold: every client comes back in that
//!   same phase, as the report, its census and `ss` agree.
//! - A real mosquitto killed by its PID and started again by an `exec` script: every
//!   client back, and the new broker's log shows each client id connecting.
//! - A failing or hanging `exec` fails the run (exit 1) and the report says which.
//! - A partition with netem in the run's own namespace: keep-alive notices it, the
//!   clients come back once it heals.
//! - Events the scenario cannot have are refused with exit 2.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_exit, assert_matches_schema, children_running, embedded_port, hard_nofile, mosquitto_binary, output_within,
    phase, raise_nofile, refused_scenario, report, sockcap, ss_states, start_run, wait_with_timeout, Mosquitto,
    Progress, TempDir,
};

/// The one event of a phase.
fn event(phase: &Value) -> &Value {
    let events = phase["events"].as_array().unwrap_or_else(|| panic!("no events in {phase}"));
    assert_eq!(events.len(), 1, "{phase}");
    &events[0]
}

/// Established sockets toward `port` (`dport`) or from it (`sport`), as `ss` counts them.
fn ss_established(side: &str, port: u16) -> u64 {
    ss_states(&format!("( {side} = :{port} )")).get("established").copied().unwrap_or(0)
}

#[test]
fn the_embedded_target_restarts_and_every_client_is_back_in_the_same_phase() {
    const N: u64 = 500;
    let toml = format!(
        "name = \"restart\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nclient_id = \"er-{{n}}\"\nkeep_alive = \"60s\"\n\
         [client]\nreconnect = {{ backoff = \"100ms..1s\", jitter = \"full\" }}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {N}, rate = 5000 }}\n\
         [[phase]]\nname = \"storm\"\nhold = \"8s\"\nfault = {{ restart_target = \"1s\" }}\n\
         expect = {{ reconnected = \"== {N}\", lost = \"== {N}\", established = \"== {N}\", errors = \"== 0\" }}\n\
         [[phase]]\nname = \"check\"\nhold = \"3s\"\n"
    );
    let dir = TempDir::new("restart-target");
    let (mut run, json) = start_run(&dir, &toml, &[]);
    let port = embedded_port(run.id());
    let first = children_running(run.id(), "serve");
    let mut progress = Progress::of(&mut run);
    progress.wait_for_phase("check", Duration::from_secs(60));
    let (client, server) = (ss_established("dport", port), ss_established("sport", port));
    let second = children_running(run.id(), "serve");
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let report = report(&json);
    assert_matches_schema(&report);
    let storm = phase(&report, "storm");
    let fault = event(storm);
    assert_eq!((fault["kind"].as_str(), fault["ok"].as_bool()), (Some("fault"), Some(true)), "{fault}");
    assert_eq!(fault["what"], "restart_target 1s", "{fault}");
    assert!(fault["duration_ms"].as_u64().unwrap() >= 1000, "the pause is part of it: {fault}");
    assert_eq!(storm["reconnected"], N, "{storm}");
    assert_eq!(storm["drops"], N, "{storm}");
    assert_eq!(storm["census"]["client"]["established"], N, "{storm}");
    assert_eq!(storm["census"]["server"]["established"], N, "{storm}");
    // The target's descriptor figures follow the new process: it holds the N again.
    let fds = &storm["target_fds"];
    assert!(fds["open"].as_u64().is_some_and(|open| open >= N), "{storm}");
    assert_eq!((client, server), (N, N), "ss toward and from the target's port, after the storm");
    assert_ne!(first, second, "a new `sockcap serve` runs after the restart");
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}

/// How many clients the broker and sockcap can both hold here: mosquitto inherits this
/// process's descriptor limit (a broker started by a script inherits sockcap's, raised
/// to the same hard limit); sockcap spreads over worker processes by itself.
fn clients_for_this_runner() -> u64 {
    5000.min(hard_nofile().saturating_sub(200))
}

/// Kills the broker a script started, by the PID it wrote, when the test ends.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn an_exec_event_restarts_a_real_mosquitto_and_every_client_is_back() {
    raise_nofile();
    let n = clients_for_this_runner();
    let first = Mosquitto::start("exec-restart-first", "");
    let port = first.port;
    let dir = TempDir::new("exec-restart");
    let conf = dir.file(
        "second.conf",
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"),
    );
    let (log, pidfile) = (dir.path("second.log"), dir.path("second.pid"));
    let script = dir.file(
        "restart.sh",
        &format!(
            "#!/bin/sh\nset -e\nold={old}\nkill -9 $old\n\
             # Its listening socket is gone once it is a zombie (the test reaps it later).\n\
             while [ -e /proc/$old ] && ! grep -q '^State:.*Z' /proc/$old/status 2>/dev/null; do sleep 0.02; done\n\
             {mosquitto} -c {conf} </dev/null >/dev/null 2>{log} &\necho $! > {pidfile}\necho \"started mosquitto $!\"\n",
            old = first.pid(),
            mosquitto = mosquitto_binary().display(),
            conf = conf.display(),
            log = log.display(),
            pidfile = pidfile.display(),
        ),
    );
    let toml = format!(
        "name = \"exec restart\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nclient_id = \"xr-{{n}}\"\nkeep_alive = \"60s\"\n\
         [client]\nreconnect = {{ backoff = \"200ms..2s\", jitter = \"full\" }}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {n}, rate = 2000, max_inflight = 50 }}\n\
         [[phase]]\nname = \"restart\"\nhold = \"20s\"\nexec = {{ command = [\"sh\", \"{script}\"], timeout = \"20s\" }}\n\
         expect = {{ reconnected = \"== {n}\", lost = \"== {n}\", established = \"== {n}\", errors = \"== 0\" }}\n\
         [[phase]]\nname = \"check\"\nhold = \"3s\"\n",
        script = script.display()
    );
    let (mut run, json) = start_run(&dir, &toml, &[]);
    let mut progress = Progress::of(&mut run);
    progress.wait_for_phase("check", Duration::from_secs(120));
    let (client, server) = (ss_established("dport", port), ss_established("sport", port));
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let second = KillOnDrop(std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok()));
    assert!(second.0.is_some(), "the script wrote the new broker's PID");
    drop(first);
    let report = report(&json);
    assert_matches_schema(&report);
    let restart = phase(&report, "restart");
    let exec = event(restart);
    assert_eq!((exec["ok"].as_bool(), exec["exit_status"].as_i64()), (Some(true), Some(0)), "{exec}");
    assert!(exec["output_tail"].as_str().unwrap().contains("started mosquitto"), "{exec}");
    assert_eq!(restart["reconnected"], n, "{restart}");
    assert_eq!(restart["census"]["client"]["established"], n, "{restart}");
    assert_eq!(restart["census"]["server"]["established"], n, "{restart}");
    assert_eq!((client, server), (n, n), "ss toward and from the broker's port after the restart");
    let log = std::fs::read_to_string(&log).expect("the new broker's log");
    for i in 0..n {
        assert!(log.contains(&format!(" as xr-{i} ")), "xr-{i} did not connect to the new broker");
    }
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}

#[test]
fn a_failing_or_hanging_exec_fails_the_run_and_the_report_names_it() {
    let dir = TempDir::new("exec-fails");
    let toml = "name = \"exec\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\
        [[phase]]\nname = \"ramp\"\nconnect = { count = 10, rate = 100 }\n\
        [[phase]]\nname = \"fine\"\nexec = { command = [\"sh\", \"-c\", \"echo all good\"] }\n\
        [[phase]]\nname = \"fails\"\nhold = \"1s\"\nexec = { command = [\"sh\", \"-c\", \"echo about to fail; echo on stderr >&2; exit 3\"] }\n\
        [[phase]]\nname = \"hangs\"\nexec = { command = [\"sh\", \"-c\", \"sleep 30 & echo $! > PIDFILE; wait\"], timeout = \"500ms\" }\n";
    let sleeper = dir.path("sleep.pid");
    let scenario = dir.file("s.toml", &toml.replace("PIDFILE", sleeper.to_str().unwrap()));
    let (json, junit, html) = (dir.path("r.json"), dir.path("r.xml"), dir.path("r.html"));
    let out = output_within(
        sockcap().args(["run", scenario.to_str().unwrap(), "--quiet"]).args([
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED: 2 events failed"), "{text}");
    assert!(text.contains("phase fails: event exec `sh -c echo about to fail; echo on stderr >&2; exit 3`"), "{text}");
    assert!(text.contains("FAILED: it exited with exit status: 3"), "{text}");
    let report = report(&json);
    assert_matches_schema(&report);
    assert_eq!(report["passed"], false);
    let fine = event(phase(&report, "fine"));
    assert_eq!((fine["ok"].as_bool(), fine["exit_status"].as_i64()), (Some(true), Some(0)), "{fine}");
    assert_eq!(fine["output_tail"], "all good");
    assert_eq!(phase(&report, "fine")["kind"], "exec");
    let fails = phase(&report, "fails");
    assert_eq!(fails["kind"], "hold");
    assert!(fails["duration_ms"].as_u64().unwrap() >= 1000, "the hold still ran: {fails}");
    let failed = event(fails);
    assert_eq!((failed["ok"].as_bool(), failed["exit_status"].as_i64()), (Some(false), Some(3)), "{failed}");
    assert_eq!(failed["output_tail"], "about to fail\non stderr", "{failed}");
    let hangs = phase(&report, "hangs");
    let hung = event(hangs);
    assert_eq!((hung["ok"].as_bool(), hung["exit_status"].as_i64()), (Some(false), None), "{hung}");
    assert!(hung["error"].as_str().unwrap().contains("did not end within its timeout of 500ms; killed"), "{hung}");
    assert!(hung["what"].as_str().unwrap().starts_with("sh -c sleep 30 &"), "{hung}");
    assert!(hangs["duration_ms"].as_u64().unwrap() < 5000, "killed at its timeout: {hangs}");
    // Its process group went with it: the shell's own child too.
    let pid = std::fs::read_to_string(&sleeper).expect("the shell wrote its child's pid");
    let status = format!("/proc/{}/status", pid.trim());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&status).is_ok_and(|s| !s.contains("State:\tZ")) {
        assert!(std::time::Instant::now() < deadline, "the command's child {} outlived its timeout", pid.trim());
        std::thread::sleep(Duration::from_millis(50));
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"2\"") && xml.contains("type=\"event\""), "{xml}");
    assert!(xml.contains("event exec failed: it exited with exit status: 3"), "{xml}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>Events</h2>") && page.contains("failed: it exited with exit status: 3"), "events table");
    // The charts' data carries them too: the census charts mark where each started.
    assert!(page.contains("\"events\":[{\"kind\":\"exec\""), "events in the page's data block");
}

#[test]
fn a_netem_partition_is_noticed_by_keep_alive_and_healed() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "this test needs root: it makes a private network namespace and runs tc in it");
    for (tool, package) in [("tc", "iproute2"), ("nft", "nftables")] {
        let found = std::process::Command::new(tool).arg("-V").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "this test needs {tool} (netem, or nftables where the kernel has no netem): apt-get install -y {package}"
        );
    }
    const N: u64 = 200;
    let toml = format!(
        "name = \"partition\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [netns]\n\
         [mqtt]\nclient_id = \"pt-{{n}}\"\nkeep_alive = \"2s\"\n\
         [client]\nreconnect = {{ backoff = \"200ms..1s\", jitter = \"full\" }}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {N}, rate = 1000 }}\n\
         [[phase]]\nname = \"partition\"\nhold = \"7s\"\nnetem = {{ loss = \"100%\" }}\n\
         expect = {{ lost = \"== {N}\", \"errors.still_down\" = \"== {N}\", reconnected = \"== 0\" }}\n\
         [[phase]]\nname = \"heal\"\nhold = \"15s\"\nnetem = {{}}\n\
         expect = {{ reconnected = \"== {N}\", established = \"== {N}\", errors = \"== 0\" }}\n"
    );
    let dir = TempDir::new("netem-partition");
    let scenario = dir.file("s.toml", &toml);
    let json = dir.path("r.json");
    let out = output_within(
        sockcap().args(["run", scenario.to_str().unwrap(), "--quiet", "--json", json.to_str().unwrap()]),
        Duration::from_secs(90),
    );
    let report = report(&json);
    assert_matches_schema(&report);
    let partition = phase(&report, "partition");
    let cut = event(partition);
    // tc's netem, or nftables on a kernel built without the netem qdisc.
    let what = cut["what"].as_str().unwrap();
    assert!(what == "tc qdisc replace dev lo root netem loss 100%" || what.contains("iif lo drop"), "{cut}");
    assert_eq!(cut["ok"], true, "{cut}");
    assert_eq!(partition["drops"], N, "{partition}");
    // The keep-alive noticed the partition: every loss was a ping timeout, and no client
    // was back when the partition phase ended.
    assert_eq!(partition["recovery"]["lost_by"]["ping_timeout"], N, "{partition}");
    assert_eq!(partition["errors"]["still_down"], N, "{partition}");
    assert_eq!(partition["census"]["client"]["established"], 0, "{partition}");
    let heal = phase(&report, "heal");
    assert_eq!(event(heal)["ok"], true, "{heal}");
    assert_eq!(heal["reconnected"], N, "{heal}");
    assert_eq!(heal["census"]["client"]["established"], N, "{heal}");
    assert_exit(&out, 0);
}

#[test]
fn events_the_scenario_cannot_have_exit_2() {
    let stderr = refused_scenario(
        "restart-remote.toml",
        "name = \"x\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n[[phase]]\nhold = \"1s\"\n\
         fault = { restart_target = \"2s\" }\n",
    );
    assert!(stderr.contains("restart-remote.toml: field `phase[0].fault.restart_target`"), "{stderr}");
    assert!(stderr.contains("set target = \"embedded\""), "{stderr}");
    let stderr = refused_scenario(
        "netem-host.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[[phase]]\nnetem = { loss = \"100%\" }\n",
    );
    assert!(stderr.contains("netem-host.toml: field `phase[0].netem`"), "{stderr}");
    assert!(stderr.contains("never on the host") && stderr.contains("add a [netns] section"), "{stderr}");
    let stderr = refused_scenario(
        "exec-empty.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[[phase]]\nexec = { command = [] }\n",
    );
    assert!(stderr.contains("field `phase[0].exec.command`: the command is empty"), "{stderr}");
    let stderr = refused_scenario(
        "exec-timeout.toml",
        "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n[[phase]]\n\
         exec = { command = [\"true\"], timeout = \"a while\" }\n",
    );
    assert!(stderr.contains("field `phase[0].exec.timeout`") && stderr.contains("write e.g."), "{stderr}");
}
