//! Faults on the target's side are counted and reported, and end in exit 1 with
//! the report written: a refused connect, a broker that closes before CONNACK
//! (as mosquitto does at its descriptor limit), a broker that refuses the session.
//! (A target that vanishes mid-run is in probe_cmd.rs, which starts its own target.)
//! A small MQTT target in Python, started here under a descriptor limit the test sets,
//! shows that the diagnosis quotes the target's own limit, and that data then a reset
//! before the CONNACK is counted `reset`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_exit, free_port, phase, run_scenario, Mosquitto, TempDir};

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
    // mosquitto held ~20 descriptors of its limit: the note says so, and does not blame
    // descriptors.
    let notes = report["notes"].to_string();
    assert!(notes.contains("not out of descriptors") && notes.contains("connection limit"), "{notes}");
}

/// A broker at its own descriptor limit: the report shows its descriptors per phase
/// (found from its listening socket) and says it is at its limit.
#[test]
fn the_target_at_its_descriptor_limit_is_named() {
    let broker = Mosquitto::start_with_nofile("fds", "", 128);
    let (out, report) = run_scenario(
        "target-fds",
        &format!(
            "name = \"past the broker's descriptors\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 200, rate = 1000 }}\n",
            broker.addr()
        ),
        &[],
    );
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    let fds = &ramp["target_fds"];
    assert_eq!(fds["processes"], 1, "{fds}");
    assert_eq!(fds["limit"], 128);
    let open = fds["open"].as_u64().unwrap();
    assert!((120..=128).contains(&open), "mosquitto holds {open} descriptors");
    assert!(ramp["errors"]["closed_before_connack"].as_u64().unwrap() > 0);
    let notes = report["notes"].to_string();
    assert!(notes.contains("at its descriptor limit") && notes.contains("of their 128 descriptors"), "{notes}");
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

/// A minimal MQTT target: accepts, reads the CONNECT, answers CONNACK and holds the
/// connection. `limit`: its RLIMIT_NOFILE; at the limit it closes what it cannot serve
/// (a spare descriptor freed to accept and close it), as a broker out of descriptors
/// does. `reset`: it sends one byte of a CONNACK, then resets the connection.
const PY_TARGET: &str = r#"
import errno, os, resource, socket, struct, sys
port_file, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(1024)
spare = open(os.devnull)
with open(port_file + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
held = []
while True:
    try:
        conn, _ = listener.accept()
    except OSError as e:
        if e.errno != errno.EMFILE:
            raise
        spare.close()
        conn, _ = listener.accept()
        conn.close()
        spare = open(os.devnull)
        continue
    conn.settimeout(5)
    try:
        conn.recv(4096)
    except OSError:
        conn.close()
        continue
    if mode == "reset":
        conn.sendall(b"\x20")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    else:
        conn.sendall(b"\x20\x02\x00\x00")
        held.append(conn)
"#;

/// The Python target, killed on drop.
struct PyTarget {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl PyTarget {
    fn start(tag: &str, mode: &str, nofile: u64) -> PyTarget {
        let dir = TempDir::new(tag);
        let script = dir.file("target.py", PY_TARGET);
        let port_file: PathBuf = dir.path("port");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&port_file)
            .arg(mode)
            .arg(nofile.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs (the test's MQTT target needs it)");
        let start = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().expect("a port");
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the Python target exited: {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the Python target did not start in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        PyTarget { child, port, _dir: dir }
    }
}

impl Drop for PyTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mqtt_ramp(name: &str, port: u16, count: u64) -> String {
    format!(
        "name = \"{name}\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {count}, rate = 500 }}\n"
    )
}

/// A target that is not mosquitto, with a descriptor limit of 64 set by the test: the
/// finding quotes what was measured of it (its descriptors in use and its limit), not
/// another machine's broker.
#[test]
fn closed_before_connack_quotes_the_targets_own_descriptor_limit() {
    const LIMIT: u64 = 64;
    let target = PyTarget::start("py-limit", "hold", LIMIT);
    let (out, report) = run_scenario("py-limit", &mqtt_ramp("small limit", target.port, 100), &[]);
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    let (held, closed) =
        (ramp["succeeded"].as_u64().unwrap(), ramp["errors"]["closed_before_connack"].as_u64().unwrap());
    assert!(held > 0 && closed > 0 && held + closed == 100, "held {held}, closed {closed}: {}", ramp["errors"]);
    assert_eq!(ramp["target_fds"]["limit"], LIMIT, "{}", ramp["target_fds"]);
    let notes: Vec<String> =
        report["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    let note = notes.iter().find(|n| n.contains("before any CONNACK")).unwrap_or_else(|| panic!("{notes:?}"));
    let open = ramp["target_fds"]["open"].as_u64().unwrap();
    assert!(note.contains(&format!("held {open} of their {LIMIT} descriptors")), "{note}");
    assert!(note.contains("at its descriptor limit"), "{note}");
    for n in &notes {
        assert!(!n.contains("mosquitto") && !n.contains("19,99") && !n.contains("19.99"), "{n}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("of their {LIMIT} descriptors")) && !stdout.contains("mosquitto"), "{stdout}");
}

/// A target that sends a byte of its answer, then resets the connection: a reset,
/// not a connection closed before CONNACK.
#[test]
fn data_then_reset_before_connack_is_counted_reset() {
    let target = PyTarget::start("py-reset", "reset", 1024);
    let (out, report) = run_scenario("py-reset", &mqtt_ramp("reset after a byte", target.port, 20), &[]);
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["reset"], 20, "{}", ramp["errors"]);
    assert_eq!(ramp["errors"]["closed_before_connack"], 0, "{}", ramp["errors"]);
    assert_eq!(ramp["latency_us"]["connect"]["count"], 20);
}
