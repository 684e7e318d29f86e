//! Messages over held MQTT connections (`subscribe`, `publish` phases): point-to-point
//! and fan-out against a real mosquitto, with an independent subscriber (Debian's
//! `mosquitto_sub`) counting what the broker really forwarded; a broker that drops
//! messages (tiny queues) makes `messages.lost` non-zero and the run fail; a `size`
//! below the message header is refused with exit 2.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    assert_exit, assert_matches_schema, phase, refused_scenario, report, run_scenario, start_run, wait_with_timeout,
    Mosquitto, Progress, TempDir,
};

/// `mosquitto_sub` on `filter` at QoS 1 printing each message's topic: a line per message.
struct Witness {
    child: Child,
    lines: Arc<AtomicU64>,
}

impl Witness {
    /// Subscribed once a probe published with `mosquitto_pub` comes back to it.
    fn start(broker: &Mosquitto, filter: &str, probe_topic: &str) -> Witness {
        let port = broker.port.to_string();
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", filter, "-F", "%t"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs (apt-get install -y mosquitto-clients)");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(AtomicU64::new(0));
        let probes = Arc::new(AtomicU64::new(0));
        let (count, seen_probe, probe) = (lines.clone(), probes.clone(), probe_topic.to_string());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == probe {
                    seen_probe.fetch_add(1, Ordering::SeqCst);
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while probes.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "mosquitto_sub never received its probe");
            let status = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", probe_topic, "-m", "probe"])
                .status()
                .expect("mosquitto_pub runs");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(100));
        }
        Witness { child, lines }
    }

    /// Its count once it reaches `want` or stops growing for 2 s.
    fn count(&self, want: u64) -> u64 {
        let (mut last, mut since) = (self.lines.load(Ordering::SeqCst), Instant::now());
        while last < want && since.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.lines.load(Ordering::SeqCst);
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn messages(report: &serde_json::Value, name: &str) -> serde_json::Value {
    phase(report, name)["messages"].clone()
}

fn n(m: &serde_json::Value, field: &str) -> u64 {
    m[field].as_u64().unwrap_or_else(|| panic!("messages.{field} missing in {m}"))
}

/// Point-to-point at QoS 1 between 1,000 publishers and 1,000 subscribers (client n + 1,000
/// publishes to the topic client n subscribed): every message acknowledged and
/// delivered once, none lost, and mosquitto_sub on `p2p/#` counts as many messages
/// as sockcap published.
#[test]
fn point_to_point_qos1_against_mosquitto_loses_nothing() {
    let broker = Mosquitto::start("pubsub-p2p", "max_queued_messages 0\n");
    let witness = Witness::start(&broker, "p2p/#", "p2p/probe");
    let toml = format!(
        "name = \"p2p\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 2000, rate = 4000 }}\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = {{ topic = \"p2p/{{n}}\", qos = 1, clients = \"0..1000\" }}\n\
         expect = {{ subscribed = \"== 1000\", suback_p99 = \"< 5s\" }}\n\
         [[phase]]\nname = \"p2p\"\n\
         publish = {{ topic = \"p2p/{{n - 1000}}\", qos = 1, clients = \"1000..2000\", rate = 2500, size = 128, count = 5000 }}\n\
         expect = {{ delivered = \"== published\", published = \"== 5000\", \"messages.lost\" = \"== 0\", \
         duplicated = \"== 0\", acknowledged = \"== 5000\", delivery_p99 = \"< 10s\" }}\n",
        broker.addr()
    );
    let (out, report) = run_scenario("pubsub-p2p", &toml, &[]);
    assert_exit(&out, 0);
    assert_matches_schema(&report);
    let m = messages(&report, "p2p");
    assert_eq!((n(&m, "published"), n(&m, "expected"), n(&m, "delivered")), (5000, 5000, 5000), "{m}");
    assert_eq!((n(&m, "lost"), n(&m, "duplicated"), n(&m, "out_of_order")), (0, 0, 0), "{m}");
    assert_eq!(m["latency_us"]["puback"]["count"].as_u64(), Some(5000));
    assert_eq!(m["latency_us"]["delivery"]["count"].as_u64(), Some(5000));
    assert_eq!(witness.count(5000), n(&m, "published"), "mosquitto_sub counts what sockcap published");
}

/// Fan-out: one publisher, 500 subscribers of one topic: each message delivered 500
/// times, as expected counts; mosquitto_sub sees each message once.
#[test]
fn fan_out_from_one_publisher_reaches_every_subscriber() {
    let broker = Mosquitto::start("pubsub-fanout", "max_queued_messages 0\n");
    let witness = Witness::start(&broker, "fan/#", "fan/probe");
    let toml = format!(
        "name = \"fanout\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
         [mqtt]\nversion = 5\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 501, rate = 2000 }}\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = {{ topic = \"fan/out\", qos = 1, clients = \"0..500\" }}\n\
         [[phase]]\nname = \"fan-out\"\n\
         publish = {{ topic = \"fan/out\", qos = 1, clients = \"500..501\", rate = 100, count = 100 }}\n\
         expect = {{ delivered = \"== expected\", expected = \"== 50000\", \"messages.lost\" = \"== 0\" }}\n",
        broker.addr()
    );
    let (out, report) = run_scenario("pubsub-fanout", &toml, &[]);
    assert_exit(&out, 0);
    let m = messages(&report, "fan-out");
    assert_eq!((n(&m, "published"), n(&m, "delivered"), n(&m, "duplicated")), (100, 50_000, 0), "{m}");
    assert_eq!(witness.count(100), 100, "mosquitto_sub saw each message once");
}

/// QoS 2 end to end against mosquitto (PUBLISH, PUBREC, PUBREL, PUBCOMP both ways), and
/// MQTT 5 fan-in to a shared subscription: 100 publishers toward `$share/g/in`, whose
/// four members get each message once between them (expected counts the group once).
#[test]
fn qos2_and_a_shared_subscription_against_mosquitto() {
    let broker = Mosquitto::start("pubsub-qos2", "max_queued_messages 0\n");
    let toml = format!(
        "name = \"qos2\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n[mqtt]\nversion = 5\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 204, rate = 2000 }}\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = {{ topic = \"q/{{n}}\", qos = 2, clients = \"0..100\" }}\n\
         [[phase]]\nname = \"share\"\nsubscribe = {{ topic = \"$share/g/in\", qos = 1, clients = \"200..204\" }}\n\
         [[phase]]\nname = \"qos2\"\n\
         publish = {{ topic = \"q/{{n - 100}}\", qos = 2, clients = \"100..200\", rate = 1000, count = 1000 }}\n\
         expect = {{ delivered = \"== 1000\", acknowledged = \"== 1000\", \"messages.lost\" = \"== 0\" }}\n\
         [[phase]]\nname = \"fan-in\"\n\
         publish = {{ topic = \"in\", qos = 1, clients = \"100..200\", rate = 1000, count = 1000 }}\n\
         expect = {{ expected = \"== 1000\", delivered = \"== expected\", duplicated = \"== 0\" }}\n",
        broker.addr()
    );
    let (out, report) = run_scenario("pubsub-qos2", &toml, &[]);
    assert_exit(&out, 0);
    let m = messages(&report, "qos2");
    assert_eq!(m["latency_us"]["pubcomp"]["count"].as_u64(), Some(1000), "{m}");
    assert_eq!(n(&messages(&report, "share"), "subscribed"), 4);
    assert_eq!(n(&messages(&report, "fan-in"), "delivered"), 1000);
}

/// A broker that drops messages: mosquitto with one message in flight and one queued per
/// client, 100 publishers at once toward one subscriber. The drops show as
/// `messages.lost` (expected = delivered + lost) and the run fails.
#[test]
fn a_broker_that_drops_messages_fails_the_run() {
    let broker = Mosquitto::start("pubsub-drops", "max_inflight_messages 1\nmax_queued_messages 1\n");
    let toml = format!(
        "name = \"drops\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 101, rate = 2000 }}\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = {{ topic = \"in\", qos = 1, clients = \"0..1\" }}\n\
         [[phase]]\nname = \"fan-in\"\n\
         publish = {{ topic = \"in\", qos = 1, clients = \"1..101\", rate = 20000, count = 2000 }}\n\
         expect = {{ \"messages.lost\" = \"== 0\" }}\n",
        broker.addr()
    );
    let (out, report) = run_scenario("pubsub-drops", &toml, &[]);
    assert_exit(&out, 1);
    let m = messages(&report, "fan-in");
    assert_eq!(n(&m, "expected"), 2000, "{m}");
    assert!(n(&m, "lost") > 0, "the broker's drops are seen: {m}");
    assert_eq!(n(&m, "delivered") + n(&m, "lost"), 2000, "{m}");
}

/// The same point-to-point on the embedded target, which routes messages itself: 500
/// subscribers, 500 publishers at QoS 1, then at QoS 2 (the publishers named as a share,
/// `"50%..100%"` of the 1,000 connections), nothing lost or duplicated.
#[test]
fn point_to_point_on_the_embedded_target() {
    let toml = "name = \"p2p-embedded\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = { count = 1000, rate = 4000 }\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = { topic = \"e/{n}\", qos = 2, clients = \"0..500\" }\n\
         [[phase]]\nname = \"qos1\"\n\
         publish = { topic = \"e/{n - 500}\", qos = 1, clients = \"500..1000\", rate = 2000, count = 2000 }\n\
         expect = { delivered = \"== published\", \"messages.lost\" = \"== 0\", duplicated = \"== 0\" }\n\
         [[phase]]\nname = \"qos2\"\n\
         publish = { topic = \"e/{n - 500}\", qos = 2, clients = \"50%..100%\", rate = 2000, count = 1000 }\n\
         expect = { delivered = \"== 1000\", acknowledged = \"== 1000\", pubcomp_p99 = \"< 5s\" }\n";
    let (out, report) = run_scenario("pubsub-embedded", toml, &[]);
    assert_exit(&out, 0);
    let m = messages(&report, "qos1");
    assert_eq!((n(&m, "published"), n(&m, "delivered"), n(&m, "lost")), (2000, 2000, 0), "{m}");
    let m = messages(&report, "qos2");
    assert_eq!(m["latency_us"]["pubcomp"]["count"].as_u64(), Some(1000), "the QoS 2 handshake completed: {m}");
}

/// A publish to a topic nobody subscribed: expected 0, delivered 0, and an expectation
/// of deliveries fails the run.
#[test]
fn a_topic_nobody_subscribed_delivers_nothing() {
    let toml = "name = \"nobody\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = { count = 20, rate = 1000 }\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = { topic = \"a/{n}\", qos = 1, clients = \"0..10\" }\n\
         [[phase]]\nname = \"elsewhere\"\n\
         publish = { topic = \"b/{n}\", qos = 1, clients = \"10..20\", rate = 500, count = 100, drain = \"500ms\" }\n\
         expect = { delivered = \">= 1\" }\n";
    let (out, report) = run_scenario("pubsub-nobody", toml, &[]);
    assert_exit(&out, 1);
    let m = messages(&report, "elsewhere");
    assert_eq!((n(&m, "published"), n(&m, "expected"), n(&m, "delivered"), n(&m, "lost")), (100, 0, 0, 0), "{m}");
}

/// The broker killed in the middle of a publish phase: the publishers' remaining
/// messages are `unsent`, the run fails, and every publisher still reports (no
/// operation left without an outcome); what was published was delivered or is lost.
#[test]
fn a_broker_killed_mid_phase_leaves_messages_unsent_and_fails_the_run() {
    let broker = Mosquitto::start("pubsub-killed", "");
    let dir = TempDir::new("pubsub-killed");
    let toml = format!(
        "name = \"killed\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 200, rate = 2000 }}\n\
         [[phase]]\nname = \"subscribe\"\nsubscribe = {{ topic = \"k/{{n}}\", qos = 1, clients = \"0..100\" }}\n\
         [[phase]]\nname = \"p2p\"\n\
         publish = {{ topic = \"k/{{n - 100}}\", qos = 1, clients = \"100..200\", rate = 1000, duration = \"4s\", timeout = \"2s\" }}\n\
         expect = {{ \"messages.lost\" = \"== 0\" }}\n",
        broker.addr()
    );
    let (mut run, json) = start_run(&dir, &toml, &[]);
    let mut progress = Progress::of(&mut run);
    progress.wait_for_phase("p2p", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1000));
    drop(broker);
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "the run fails");
    let report = report(&json);
    let p = phase(&report, "p2p");
    let m = &p["messages"];
    assert!(n(m, "published") > 0 && n(m, "unsent") > 0, "{m}");
    assert_eq!(n(m, "published") + n(m, "unsent"), 4000, "every scheduled message is one or the other: {m}");
    assert_eq!(n(m, "delivered") + n(m, "lost"), n(m, "expected"), "{m}");
    assert_eq!(p["errors"]["no_outcome"].as_u64().unwrap_or(0), 0, "{p}");
}

/// The embedded target routes within one process: traffic toward several of its
/// processes is refused before the run (a publisher and a subscriber could miss each other).
#[test]
fn traffic_on_several_embedded_processes_is_refused() {
    let stderr = refused_scenario(
        "pubsub-split.toml",
        "name = \"s\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\n[embedded]\nworkers = 2\n\
         [[phase]]\nconnect = { count = 2, rate = 10 }\n\
         [[phase]]\nsubscribe = { topic = \"t\", clients = \"0..1\" }\n",
    );
    assert!(stderr.contains("pubsub-split.toml") && stderr.contains("within one process"), "{stderr}");
}

/// A message smaller than its header cannot carry it: refused, naming the field.
#[test]
fn a_size_below_the_header_is_refused() {
    let stderr = refused_scenario(
        "pubsub-size.toml",
        "name = \"s\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n\
         [[phase]]\nconnect = { count = 2, rate = 10 }\n\
         [[phase]]\npublish = { topic = \"t\", rate = 10, count = 1, size = 10 }\n",
    );
    assert!(stderr.contains("phase[1].publish.size") && stderr.contains("24"), "{stderr}");
}
