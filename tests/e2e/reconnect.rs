//! Reconnects (`[client] reconnect`): 300 MQTT clients held on a real mosquitto; during
//! the hold the test kills the broker by its PID and starts a new one on the same port.
//! With a reconnect policy every client comes back (the report's `reconnected`, its
//! end-of-hold census and `ss` agree on 300, and the new broker saw each client id),
//! no error counted for a loss that came back, and the hold's recovery figures
//! (`recovery`: lost, recovered, recovery times, peak rate, last return) say so and are
//! judged; without one they stay lost.

use std::time::Duration;

use crate::support::{
    assert_matches_schema, phase, report, ss_states, start_run, wait_for_established, wait_with_timeout, Mosquitto,
    Progress, TempDir,
};

const CLIENTS: u64 = 300;

/// The hold's expectations when every client comes back: no error for a loss that did.
const ALL_BACK: &str = "errors = \"== 0\", recovery_max = \"< 5s\", peak_reconnect_rate = \"> 0\"";

fn scenario(port: u16, reconnect: &str, ramp_expect: &str, storm_expect: &str) -> String {
    format!(
        "name = \"broker restart\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"mqtt\"\nsample_every = \"100ms\"\n\
         [mqtt]\nclient_id = \"rc-{{n}}\"\nkeep_alive = \"60s\"\n\
         [client]\n{reconnect}\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {CLIENTS}, rate = 3000 }}\nexpect = {{ {ramp_expect} }}\n\
         [[phase]]\nname = \"storm\"\nhold = \"10s\"\n\
         expect = {{ reconnected = \"== {CLIENTS}\", lost = \"== {CLIENTS}\", established = \"== {CLIENTS}\", {storm_expect} }}\n"
    )
}

/// Run the scenario; once the hold has begun with every client up, kill the broker by
/// its PID and start a new one on the same port. Returns the run's exit code, its
/// report, what `ss` counted toward the port before the hold's end (once all are back,
/// when `back`), and the new broker's log.
fn restart_during_hold(
    tag: &str,
    reconnect: &str,
    expect: (&str, &str),
    back: bool,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, u64, String) {
    let first = Mosquitto::start(&format!("{tag}-first"), "");
    let port = first.port;
    let dir = TempDir::new(tag);
    let (mut run, json) = start_run(&dir, &scenario(port, reconnect, expect.0, expect.1), extra);
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
    let (code, report, ss_established, log) = restart_during_hold("reconnect", FULL_JITTER, ("", ALL_BACK), true, &[]);
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
    // A loss that came back is no error; the refused attempts while the broker was down
    // are refusals, not errors.
    let errors: u64 = storm["errors"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(errors, 0, "{storm}");
    assert_eq!(phase(&report, "ramp").get("recovery"), None, "no loss in the ramp: no recovery figures");
    let recovery = &storm["recovery"];
    assert_eq!((&recovery["lost"], &recovery["recovered"]), (&CLIENTS.into(), &CLIENTS.into()), "{recovery}");
    assert_eq!(recovery["down_at_end"], 0, "{recovery}");
    let times = &recovery["recovery_us"];
    assert_eq!(times["count"], CLIENTS, "{recovery}");
    let (min, max) = (times["min"].as_u64().unwrap(), times["max"].as_u64().unwrap());
    assert!(min > 0 && max >= min && max <= 10_000_000, "recovery times within the 10 s hold: {recovery}");
    let (started, duration) = (storm["started_ms"].as_u64().unwrap(), storm["duration_ms"].as_u64().unwrap());
    let last_back = recovery["last_back_ms"].as_u64().unwrap();
    assert!((started..=started + duration).contains(&last_back), "last back at {last_back} ms: {storm}");
    let peak = recovery["peak_reconnect_rate_per_s"].as_u64().unwrap();
    assert!(peak > 0 && peak <= CLIENTS, "{recovery}");
    let timeline: u64 = recovery["reconnects_100ms"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(timeline, CLIENTS, "every return on the timeline: {recovery}");
    // The census samples of the hold (every 100 ms) show the drop and the climb back,
    // as the HTML report's census chart draws them.
    let established: Vec<u64> =
        storm["samples"].as_array().unwrap().iter().map(|s| s["client"]["established"].as_u64().unwrap()).collect();
    let low = established.iter().position(|&n| n < CLIENTS).expect("a sample during the drop");
    assert!(established[low..].contains(&CLIENTS), "back to {CLIENTS} after the drop: {established:?}");
    let refused: u64 = recovery["refusals"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(storm["reconnect_attempts"].as_u64().unwrap(), CLIENTS + refused, "each attempt back or refused");
    for (expr, passed) in [("errors == 0", true), ("recovery_max < 5s", true), ("peak_reconnect_rate > 0", true)] {
        let e = storm["expectations"].as_array().unwrap().iter().find(|e| e["expr"] == expr).unwrap();
        assert_eq!(e["passed"], passed, "{e}");
        assert!(e["actual"].as_f64().is_some_and(|a| a > 0.0) || expr.starts_with("errors"), "{e}");
    }
    assert_eq!(code, Some(0), "every expectation passes: {}", report["phases"]);
}

const FULL_JITTER: &str = "reconnect = { backoff = \"100ms..1s\", jitter = \"full\" }";

/// Expectations on recovery are judged on what was measured: an impossible recovery
/// time fails the run, and one in a phase that lost nothing fails as unobserved rather
/// than passing on a zero.
#[test]
fn recovery_expectations_fail_on_an_impossible_time_and_where_nothing_was_lost() {
    let expect = ("recovery_p99 = \"< 5s\"", "errors = \"== 0\", recovery_p50 = \"< 1us\"");
    // Over two worker processes: the recovery figures merge exactly.
    let (code, report, ..) =
        restart_during_hold("reconnect-impossible", FULL_JITTER, expect, true, &["--workers", "2"]);
    assert_eq!(report["scenario"]["workers"], 2);
    let recovery = &phase(&report, "storm")["recovery"];
    assert_eq!((&recovery["lost"], &recovery["recovered"]), (&CLIENTS.into(), &CLIENTS.into()), "{recovery}");
    assert_eq!(recovery["recovery_us"]["count"], CLIENTS, "both workers' histograms: {recovery}");
    let timeline: u64 = recovery["reconnects_100ms"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(timeline, CLIENTS, "both workers' timelines: {recovery}");
    let find = |phase_name: &str, expr: &str| {
        let expectations = phase(&report, phase_name)["expectations"].as_array().unwrap().clone();
        expectations.into_iter().find(|e| e["expr"] == expr).unwrap_or_else(|| panic!("no {expr} in {phase_name}"))
    };
    let impossible = find("storm", "recovery_p50 < 1us");
    assert_eq!(impossible["passed"], false, "{impossible}");
    assert!(impossible["actual"].as_f64().is_some_and(|us| us > 1.0), "judged on a measured time: {impossible}");
    let unobserved = find("ramp", "recovery_p99 < 5s");
    assert_eq!((&unobserved["passed"], &unobserved["actual"]), (&false.into(), &serde_json::Value::Null));
    assert_eq!(unobserved["reason"], "no connection was lost in this phase: no recovery to measure");
    assert_eq!(find("storm", "errors == 0")["passed"], true);
    assert_eq!(code, Some(1), "the failed expectations fail the run");
}

#[test]
fn without_a_reconnect_policy_they_stay_lost() {
    let expect = ("", "errors = \">= 0\"");
    let (code, report, ss_established, _) =
        restart_during_hold("no-reconnect", "on_eof = \"close\"", expect, false, &[]);
    let storm = phase(&report, "storm");
    assert_eq!(storm["drops"], CLIENTS, "{storm}");
    assert_eq!(storm["reconnected"], 0, "{storm}");
    assert_eq!(storm["census"]["client"]["established"], 0, "{storm}");
    assert_eq!(ss_established, 0);
    // Lost for good: an error, and lost with none back.
    let errors: u64 = storm["errors"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(errors, CLIENTS, "{storm}");
    assert_eq!((&storm["recovery"]["lost"], &storm["recovery"]["recovered"]), (&CLIENTS.into(), &0.into()));
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
         [[phase]]\nname = \"down\"\nhold = \"3s\"\nexpect = {{ lost = \"== {CLIENTS}\", \"errors.still_down\" = \"== {CLIENTS}\" }}\n\
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
    let down = phase(&report, "down");
    assert_eq!(down["reconnected"], 0);
    // The attempts against a port nobody listens on are refusals, not errors.
    assert!(down["recovery"]["refusals"]["refused"].as_u64().unwrap() > 0, "{down}");
    assert_eq!((&down["recovery"]["lost"], &down["recovery"]["recovered"]), (&CLIENTS.into(), &0.into()));
    assert_eq!(down["recovery"]["down_at_end"], CLIENTS, "all still trying when the hold ended");
    // Clients missing at a phase's end are an error of that phase: no PASSED without them.
    let errors: u64 = down["errors"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!((down["errors"]["still_down"].as_u64(), errors), (Some(CLIENTS), CLIENTS), "{down}");
    // (No recovery figures at all when no attempt fell in the close phase.)
    let down_after = close["recovery"].get("down_at_end").map_or(Some(0), |d| d.as_u64());
    assert_eq!(down_after, Some(0), "the close orders ended their attempts: {close}");
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}
