//! MQTT 5 (`[mqtt] version = 5`): clients held on the embedded target and on a real
//! mosquitto, whose own log names the protocol level it saw (`p5`); a broker's
//! connection limit and its session takeover counted by what mosquitto really does
//! (it sends neither a reason code nor a DISCONNECT there); CONNACK refusals counted by
//! reason; the server's keep-alive honoured; a bad `version` refused with exit 2.

use std::time::Duration;

use crate::support::{
    assert_matches_schema, phase, refused_scenario, report, run_scenario, ss_states, start_run, wait_for_established,
    wait_with_timeout, Mosquitto, Progress, TempDir,
};

/// A scenario toward `target` with MQTT 5 clients: `clients` connected, then held `hold`.
fn scenario(target: &str, mqtt: &str, clients: u64, hold: &str, hold_expect: &str) -> String {
    format!(
        "name = \"mqtt5\"\ntarget = \"{target}\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nversion = 5\nclient_id = \"v5-{{n}}\"\n{mqtt}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {clients}, rate = 2000 }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"{hold}\"\n{hold_expect}\n"
    )
}

/// The port a child of the run `pid` listens on: its embedded target.
fn listening_port(pid: u32) -> u16 {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(text.split_whitespace().map(str::to_string));
    }
    let out = std::process::Command::new("ss").args(["-Htlnp"]).output().expect("ss runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| children.iter().any(|c| l.contains(&format!("pid={c},"))))
        .find_map(|l| l.split_whitespace().nth(3)?.rsplit_once(':')?.1.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no child of sockcap run {pid} listens"))
}

/// 300 MQTT 5 clients on the embedded target: the census says ESTABLISHED == 300 on
/// both sides, as `ss` counts them during the hold, and the report says version 5.
#[test]
fn mqtt5_clients_are_held_on_the_embedded_target() {
    const N: u64 = 300;
    let dir = TempDir::new("mqtt5-embedded");
    let toml = scenario(
        "embedded",
        "keep_alive = \"30s\"\nsession_expiry = \"0s\"\nreceive_maximum = 10\nuser_properties = { run = \"e2e\" }",
        N,
        // Long enough for `ss` to read both sides while held, on a loaded runner too.
        "6s",
        &format!("expect = {{ established = \"== {N}\", \"server.established\" = \"== {N}\" }}"),
    );
    let (mut run, json) = start_run(&dir, &toml, &[]);
    Progress::of(&mut run).wait_for_phase("hold", Duration::from_secs(30));
    let port = listening_port(run.id());
    wait_for_established(port, N, Duration::from_secs(10));
    let client_side = ss_states(&format!("( dport = :{port} )")).get("established").copied().unwrap_or(0);
    let server_side = ss_states(&format!("( sport = :{port} )")).get("established").copied().unwrap_or(0);
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let report = report(&json);
    assert_matches_schema(&report);
    assert_eq!(report["scenario"]["mqtt_version"], 5, "{}", report["scenario"]);
    let hold = phase(&report, "hold");
    assert_eq!(hold["census"]["client"]["established"], N, "{hold}");
    assert_eq!(hold["census"]["server"]["established"], N, "{hold}");
    assert_eq!(phase(&report, "ramp")["succeeded"], N);
    assert_eq!((client_side, server_side), (N, N), "ss during the hold");
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}

/// 200 MQTT 5 clients held on mosquitto, whose log says each connected with protocol
/// level 5 (`(p5, c1, k60)`).
#[test]
fn mqtt5_clients_are_held_on_mosquitto_at_protocol_level_5() {
    const N: u64 = 200;
    let broker = Mosquitto::start("mqtt5-held", "");
    let toml = scenario(
        &broker.addr(),
        "keep_alive = \"60s\"\nsession_expiry = \"0s\"\nmaximum_packet_size = 65536\nuser_properties = { site = \"lab\" }",
        N,
        "2s",
        &format!("expect = {{ established = \"== {N}\" }}"),
    );
    let (out, report) = run_scenario("mqtt5-held", &toml, &[]);
    assert_matches_schema(&report);
    let hold = phase(&report, "hold");
    assert_eq!(hold["census"]["client"]["established"], N, "{hold}");
    assert_eq!(hold["drops"], 0, "{hold}");
    let log = broker.log();
    let level5 = log.lines().filter(|l| l.contains("New client connected") && l.contains("(p5, c1, k60")).count();
    assert_eq!(level5 as u64, N, "mosquitto's log:\n{}", log.lines().take(20).collect::<Vec<_>>().join("\n"));
    assert!(!log.contains("(p4,") && !log.contains("(p2,"), "no client at another level");
    assert_eq!(report["scenario"]["mqtt_version"], 5);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(mqtt 5 → "), "the text report names the version:\n{stdout}");
    assert_eq!(out.status.code(), Some(0), "{}", report["phases"]);
}

/// mosquitto with `max_connections 50` and 80 MQTT 5 clients: the 30 over the limit are
/// refused. Debian's mosquitto 2.0 refuses a connection over a listener's limit at accept
/// time: it logs "Client connection from ... denied: max_connections exceeded." and closes
/// the socket before reading any CONNECT, so no CONNACK and no reason code (neither 0x97
/// quota exceeded nor 0x9F) can reach the client, whatever its version. They are counted
/// by what happened, `closed_before_connack`, never as a named CONNACK refusal, and the
/// run fails its `errors == 0` (exit 1). Named refusals are asserted against a broker that
/// sends a code, in [`a_connack_refusal_is_counted_by_its_reason_code`].
#[test]
fn mosquitto_over_its_connection_limit_closes_the_rest_before_connack() {
    let broker = Mosquitto::start("mqtt5-limit", "max_connections 50");
    let toml = scenario(&broker.addr(), "keep_alive = \"60s\"", 80, "1s", "expect = { errors = 0 }");
    let (out, report) = run_scenario("mqtt5-limit", &toml, &[]);
    assert_matches_schema(&report);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["succeeded"], 50, "{ramp}");
    let errors = ramp["errors"].as_object().unwrap();
    assert_eq!(errors["closed_before_connack"], 30, "{errors:?}");
    assert_eq!(errors["connack_refused"], 0, "mosquitto sends no CONNACK over max_connections: {errors:?}");
    assert!(!errors.keys().any(|k| k.contains('.')), "no reason code was sent: {errors:?}");
    let denied = broker.log().matches("denied: max_connections exceeded").count();
    assert_eq!(denied, 30, "mosquitto's log:\n{}", broker.log());
    assert_eq!(out.status.code(), Some(1), "errors == 0 fails: {}", report["phases"]);
}

/// mosquitto refusing clients (a password file that knows no one) with MQTT 5's reason
/// code 0x87 and MQTT 3.1.1's return code 5: both are counted by name in the phase's
/// errors, `connack_refused.not_authorized`, beside the kind's total, and the run fails.
#[test]
fn a_connack_refusal_is_counted_by_its_reason_code() {
    let dir = TempDir::new("mqtt5-refused-passwords");
    let passwords = dir.file("passwords", "");
    let broker =
        Mosquitto::start("mqtt5-refused", &format!("allow_anonymous false\npassword_file {}", passwords.display()));
    for version in [5, 4] {
        let toml = scenario(
            &broker.addr(),
            "keep_alive = \"60s\"\nusername = \"nobody\"\npassword = \"wrong\"",
            20,
            "1s",
            "expect = { errors = 0 }",
        )
        .replace("version = 5", &format!("version = {version}"));
        let (out, report) = run_scenario(&format!("mqtt5-refused-{version}"), &toml, &[]);
        assert_matches_schema(&report);
        assert_eq!(report["scenario"]["mqtt_version"], version);
        let errors = phase(&report, "ramp")["errors"].as_object().unwrap();
        let named: Vec<&String> = errors.keys().filter(|k| k.contains('.')).collect();
        assert_eq!(named, ["connack_refused.not_authorized"], "version {version}: {errors:?}");
        assert_eq!(errors["connack_refused.not_authorized"], 20, "{errors:?}");
        assert_eq!(errors["connack_refused"], 20, "{errors:?}");
        assert_eq!(out.status.code(), Some(1), "errors == 0 fails");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("actual 20"), "the total counts each refusal once:\n{stdout}");
    }
}

/// mosquitto with `max_keepalive 10` (2.0.11 refuses a value under 10) tells MQTT 5
/// clients asking for 60 s its Server Keep Alive of 10 s: each client's first PINGREQ
/// (in mosquitto's log, to the second) comes at most 11 s after its connect (10 s and
/// the keep-alive tick), and the connections survive a hold of 17 s. Pinging at its own
/// 60 s instead (checked by making the client ignore Server Keep Alive), no client pings
/// in the hold and the test fails.
#[test]
fn the_servers_keep_alive_is_honoured() {
    const N: u64 = 20;
    let broker = Mosquitto::start("mqtt5-keepalive", "max_keepalive 10\nlog_type all");
    let toml = scenario(
        &broker.addr(),
        "keep_alive = \"60s\"",
        N,
        "17s",
        &format!("expect = {{ established = \"== {N}\", drops = 0 }}"),
    );
    let (out, report) = run_scenario("mqtt5-keepalive", &toml, &[]);
    let hold = phase(&report, "hold");
    assert_eq!(hold["drops"], 0, "{hold}");
    assert_eq!(hold["census"]["client"]["established"], N, "{hold}");
    let log = broker.log();
    let second = |line: &str| line.split(':').next()?.trim().parse::<u64>().ok();
    for n in 0..N {
        let id = format!("v5-{n}");
        let connected = log
            .lines()
            .find(|l| l.contains("New client connected") && l.contains(&format!(" as {id} ")))
            .and_then(second)
            .unwrap_or_else(|| panic!("{id} never connected:\n{log}"));
        let pings: Vec<u64> =
            log.lines().filter(|l| l.ends_with(&format!("Received PINGREQ from {id}"))).filter_map(second).collect();
        let first = *pings.first().unwrap_or_else(|| panic!("{id} never pinged in a 17 s hold"));
        assert!(first - connected <= 11, "{id} first pinged {} s after connecting", first - connected);
    }
    assert_eq!(out.status.code(), Some(0), "{}", report["phases"]);
}

#[test]
fn a_bad_version_is_refused_with_exit_2() {
    for version in ["3", "\"3.1\"", "6"] {
        let stderr = refused_scenario(
            "bad-version.toml",
            &format!(
                "name = \"x\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n[mqtt]\nversion = {version}\n\
                 [[phase]]\nhold = \"1s\"\n"
            ),
        );
        assert!(stderr.contains("bad-version.toml"), "names the file: {stderr}");
        assert!(stderr.contains("mqtt.version"), "names the field: {stderr}");
        assert!(stderr.contains("version = 5"), "says the fix: {stderr}");
    }
}

/// A session taken over: a second run connects the client ids the first run holds.
/// MQTT 5 lets the broker tell the first client why (DISCONNECT 0x8E, session taken
/// over, counted `server_disconnect.session_taken_over`), but mosquitto 2.0.11 does not:
/// it logs "Client X already connected, closing old connection." and closes the socket
/// without a DISCONNECT. So the first run counts the drops as what really happened,
/// `closed_by_peer`, and no server DISCONNECT. (How sockcap counts a server's
/// DISCONNECT and AUTH is tested against a peer that sends them, in
/// `engine/connection/hold.rs`.)
#[test]
fn a_session_taken_over_by_mosquitto_is_closed_without_a_disconnect() {
    const N: u64 = 10;
    let broker = Mosquitto::start("mqtt5-taken-over", "");
    let dir = TempDir::new("mqtt5-taken-over");
    let first = scenario(
        &broker.addr(),
        "keep_alive = \"60s\"",
        N,
        "30s",
        &format!("expect = {{ drops = \"== {N}\", errors = \"== {N}\" }}"),
    );
    let (mut run, json) = start_run(&dir, &first, &[]);
    Progress::of(&mut run).wait_for_phase("hold", Duration::from_secs(30));
    wait_for_established(broker.port, N, Duration::from_secs(10));
    let second = scenario(&broker.addr(), "keep_alive = \"60s\"", N, "1s", "");
    let (out, _) = run_scenario("mqtt5-taking-over", &second, &[]);
    assert_eq!(out.status.code(), Some(0), "the second run takes the sessions over");
    // The first run's hold lasts 30 s: stop it once its drops are in (SIGINT drains
    // and reports; exit 130).
    std::thread::sleep(Duration::from_secs(1));
    assert!(std::process::Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap().success());
    let status = wait_with_timeout(&mut run, Duration::from_secs(30));
    let report = report(&json);
    assert_matches_schema(&report);
    let hold = phase(&report, "hold");
    assert_eq!(hold["drops"], N, "{hold}");
    assert_eq!(hold["errors"]["closed_by_peer"], N, "{hold}");
    assert_eq!(hold["errors"]["server_disconnect"], 0, "mosquitto sent no DISCONNECT: {hold}");
    let log = broker.log();
    assert_eq!(log.matches("already connected, closing old connection").count() as u64, N, "{log}");
    assert_eq!(status.code(), Some(130));
}

/// `client_id = ""` with MQTT 5: mosquitto assigns each client an id of its own (its
/// CONNACK's Assigned Client Identifier), and all are held.
#[test]
fn an_empty_client_id_lets_mosquitto_assign_them() {
    const N: u64 = 20;
    let broker = Mosquitto::start("mqtt5-assigned", "");
    let toml =
        scenario(&broker.addr(), "keep_alive = \"60s\"", N, "1s", &format!("expect = {{ established = \"== {N}\" }}"))
            .replace("client_id = \"v5-{n}\"", "client_id = \"\"");
    let (out, report) = run_scenario("mqtt5-assigned", &toml, &[]);
    assert_eq!(phase(&report, "hold")["census"]["client"]["established"], N);
    let log = broker.log();
    let ids: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("New client connected"))
        .filter_map(|l| l.split(" as ").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(ids.len() as u64, N, "distinct ids: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("auto-")), "assigned by mosquitto: {ids:?}");
    assert_eq!(out.status.code(), Some(0), "{}", report["phases"]);
}
