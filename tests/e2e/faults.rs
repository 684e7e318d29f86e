//! Faults on the target's side are counted and reported, and end in exit 1 with
//! the report written: a refused connect, a broker that closes before CONNACK
//! (as mosquitto does at its descriptor limit), a broker that refuses the session.
//! (A target that vanishes mid-run is in probe_cmd.rs, which starts its own target.)

use crate::support::{assert_exit, free_port, phase, run_scenario, Mosquitto};

#[test]
fn refused_target_is_counted_and_exits_1() {
    let port = free_port();
    let (out, report) = run_scenario(
        "refused",
        &format!(
            "name = \"refused\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 50, rate = 500 }}\n"
        ),
        &[],
    );
    assert_exit(&out, 1);
    assert_eq!(report["passed"], false);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["refused"], 50);
    assert_eq!(ramp["succeeded"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL errors == 0"), "{stdout}");
    assert!(stdout.contains("were refused"), "{stdout}");
}

/// mosquitto with `max_connections 20` accepts the TCP connection of the clients past
/// its limit and closes it before any CONNACK: the symptom of a broker out of
/// descriptors. (mosquitto 2.0 lets one client past the limit: it checks with `>`.)
#[test]
fn broker_closing_before_connack_is_its_own_error_kind() {
    let broker = Mosquitto::start("maxconn", "max_connections 20");
    let (out, report) = run_scenario(
        "maxconn",
        &format!(
            "name = \"over the broker's limit\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 30, rate = 300 }}\n\
             expect = {{ established = \"== 20\" }}\n",
            broker.addr()
        ),
        &[],
    );
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    let held = ramp["succeeded"].as_u64().unwrap();
    assert!((20..=21).contains(&held), "held {held}");
    assert_eq!(ramp["errors"]["closed_before_connack"], 30 - held);
    // the TCP connect of the refused ten was measured
    assert_eq!(ramp["latency_us"]["connect"]["count"], 30);
    assert_eq!(ramp["latency_us"]["handshake"]["count"], held);
    let notes = report["notes"].to_string();
    assert!(notes.contains("out of descriptors"), "{notes}");
}

/// A broker that refuses the session (CONNACK code 5, not authorized) is counted as
/// `connack_refused`, not as a TCP failure.
#[test]
fn connack_refusal_is_counted() {
    let broker = Mosquitto::start("noanon", "allow_anonymous false");
    let (out, report) = run_scenario(
        "noanon",
        &format!(
            "name = \"refused session\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 40, rate = 400 }}\n",
            broker.addr()
        ),
        &[],
    );
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["connack_refused"], 40);
    assert_eq!(ramp["succeeded"], 0);
    assert_eq!(ramp["latency_us"]["connect"]["count"], 40);
    assert!(report["notes"].to_string().contains("sessions were refused"));
}

/// A target that stops reading after CONNACK never answers a PINGREQ: each client sends
/// one ping, finds no PINGRESP when the next is due, and is counted as a `ping_timeout`
/// drop (the connection stays ESTABLISHED in the kernel: only keep-alive can tell).
#[test]
fn unanswered_pings_are_ping_timeout_drops() {
    let (out, report) = run_scenario(
        "silent",
        "name = \"silent target\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nkeep_alive = \"200ms\"\n[embedded]\nread = false\n\
         [[phase]]\nname = \"ramp\"\nconnect = { count = 20, rate = 200 }\n\
         [[phase]]\nname = \"hold\"\nhold = \"1500ms\"\n",
        &[],
    );
    assert_exit(&out, 1);
    let phases = report["phases"].as_array().expect("phases");
    let total = |f: &dyn Fn(&serde_json::Value) -> u64| phases.iter().map(f).sum::<u64>();
    assert_eq!(total(&|p| p["succeeded"].as_u64().unwrap_or(0)), 20, "{report}");
    assert_eq!(total(&|p| p["errors"]["ping_timeout"].as_u64().unwrap_or(0)), 20, "{report}");
    assert_eq!(total(&|p| p["drops"].as_u64().unwrap_or(0)), 20, "{report}");
}
