//! Reconnects (`[client] reconnect`): 300 MQTT clients held on a real mosquitto; during
//! the hold the test kills the broker by its PID and starts a new one on the same port.
//! With a reconnect policy every client comes back (the report's `reconnected`, its
//! end-of-hold census and `ss` agree on 300, and the new broker saw each client id);
//! without one they stay lost.

use std::time::Duration;

use crate::support::{
    assert_matches_schema, phase, report, ss_states, start_run, wait_for_established, wait_with_timeout, Mosquitto,
    Progress, TempDir,
};

const CLIENTS: u64 = 300;

fn scenario(port: u16, reconnect: &str) -> String {
    format!(
        "name = \"broker restart\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nclient_id = \"rc-{{n}}\"\nkeep_alive = \"60s\"\n\
         [client]\n{reconnect}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {CLIENTS}, rate = 3000 }}\n\
         [[phase]]\nname = \"storm\"\nhold = \"10s\"\n\
         expect = {{ reconnected = \"== {CLIENTS}\", lost = \"== {CLIENTS}\", established = \"== {CLIENTS}\", errors = \">= 0\" }}\n"
    )
}

/// Run the scenario; once the hold has begun with every client up, kill the broker by
/// its PID and start a new one on the same port. Returns the run's exit code, its
/// report, what `ss` counted toward the port before the hold's end (once all are back,
/// when `back`), and the new broker's log.
fn restart_during_hold(tag: &str, reconnect: &str, back: bool) -> (Option<i32>, serde_json::Value, u64, String) {
    let first = Mosquitto::start(&format!("{tag}-first"), "");
    let port = first.port;
    let dir = TempDir::new(tag);
    let (mut run, json) = start_run(&dir, &scenario(port, reconnect), &[]);
    Progress::of(&mut run).wait_for_phase("storm", Duration::from_secs(30));
    wait_for_established(port, CLIENTS, Duration::from_secs(10));
    let pid = first.pid();
    // Drop kills it by its PID (SIGKILL) and reaps it: every connection drops at once.
    drop(first);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "mosquitto {pid} still runs");
    let second = Mosquitto::start_on(&format!("{tag}-second"), port, "");
    // The hold lasts 10 s from its start; the clients come back with backoff up to 1 s
    // (within ~2 s); `ss` counts them well before the hold ends.
    if back {
        wait_for_established(port, CLIENTS, Duration::from_secs(5));
    }
    std::thread::sleep(Duration::from_secs(1));
    let seen = ss_states(&format!("( dport = :{port} )")).get("established").copied().unwrap_or(0);
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    (status.code(), report(&json), seen, second.log())
}

#[test]
fn held_clients_come_back_after_the_broker_restarts() {
    let (code, report, ss_established, log) =
        restart_during_hold("reconnect", "reconnect = { backoff = \"100ms..1s\", jitter = \"full\" }", true);
    assert_matches_schema(&report);
    let storm = phase(&report, "storm");
    assert_eq!(storm["reconnected"], CLIENTS, "{storm}");
    assert_eq!(storm["drops"], CLIENTS, "{storm}");
    assert!(storm["reconnect_attempts"].as_u64().unwrap() >= CLIENTS, "{storm}");
    assert_eq!(storm["census"]["client"]["established"], CLIENTS, "{storm}");
    assert_eq!(storm["open_at_end"], CLIENTS, "{storm}");
    assert_eq!(ss_established, CLIENTS, "ss toward the broker's port");
    // The new broker saw every client id connect (the same ids: rc-0 .. rc-299).
    for n in 0..CLIENTS {
        assert!(log.contains(&format!(" as rc-{n} ")), "rc-{n} did not connect to the new broker");
    }
    assert_eq!(code, Some(0), "every expectation passes: {}", report["phases"]);
}

#[test]
fn without_a_reconnect_policy_they_stay_lost() {
    let (code, report, ss_established, _) = restart_during_hold("no-reconnect", "on_eof = \"close\"", false);
    let storm = phase(&report, "storm");
    assert_eq!(storm["drops"], CLIENTS, "{storm}");
    assert_eq!(storm["reconnected"], 0, "{storm}");
    assert_eq!(storm["census"]["client"]["established"], 0, "{storm}");
    assert_eq!(ss_established, 0);
    assert_eq!(code, Some(1), "reconnected == {CLIENTS} fails");
}

/// A close phase while the broker stays down: each close order finds its connection
/// between reconnect attempts; it is a close outcome (not an operation that never
/// reported one) and the connection tries no more.
#[test]
fn a_close_order_ends_a_connection_that_is_down() {
    let broker = Mosquitto::start("reconnect-down", "");
    let port = broker.port;
    let dir = TempDir::new("reconnect-down");
    let toml = format!(
        "name = \"broker gone\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"mqtt\"\n\
         [client]\nreconnect = {{ backoff = \"100ms..1s\", jitter = \"full\" }}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {CLIENTS}, rate = 3000 }}\n\
         [[phase]]\nname = \"down\"\nhold = \"3s\"\nexpect = {{ lost = \"== {CLIENTS}\", errors = \">= 0\" }}\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"fin\", rate = 3000 }}\n"
    );
    let (mut run, json) = start_run(&dir, &toml, &[]);
    Progress::of(&mut run).wait_for_phase("down", Duration::from_secs(30));
    wait_for_established(port, CLIENTS, Duration::from_secs(10));
    drop(broker);
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    let report = report(&json);
    let close = phase(&report, "close");
    assert_eq!(close["errors"]["no_outcome"], 0, "{close}");
    assert_eq!(close["succeeded"], CLIENTS, "{close}");
    assert_eq!(phase(&report, "down")["reconnected"], 0);
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}
