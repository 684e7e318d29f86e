//! WebSocket (`transport = "ws"` and `"wss"`): MQTT clients over WebSocket against a
//! real broker that speaks it, amqtt (installed from PyPI in a venv by `.ci/run`; its
//! log counts the connections on its ws and wss listeners and the MQTT clients that
//! connected), with keep-alive pings and a DISCONNECT close; and 200 clients held on
//! the embedded target over ws and wss, counted ESTABLISHED on both sides by the report
//! and by `ss`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{
    assert_exit, assert_matches_schema, embedded_port, free_port, phase, report, run_scenario, ss_states, start_run,
    wait_for_established, wait_for_listener, wait_with_timeout, Progress, TempDir,
};
use crate::tls::Pki;

/// amqtt, from `$SOCKCAP_AMQTT` or the venv `.ci/run` makes (`target/amqtt`).
fn amqtt_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SOCKCAP_AMQTT") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/amqtt/bin/amqtt");
    assert!(
        path.is_file(),
        "{} is missing: python3 -m venv target/amqtt && target/amqtt/bin/pip install amqtt==0.12.1 (as .ci/run does)",
        path.display()
    );
    path
}

/// amqtt with a ws listener and a wss one (the test's certificate), on free ports.
struct Amqtt {
    ws: u16,
    wss: u16,
    child: Child,
    dir: TempDir,
}

impl Amqtt {
    fn start(tag: &str, pki: &Pki) -> Amqtt {
        let dir = TempDir::new(&format!("amqtt-{tag}"));
        let (ws, wss) = (free_port(), free_port());
        let config = dir.file(
            "broker.yaml",
            &format!(
                "listeners:\n  default:\n    type: ws\n    bind: 127.0.0.1:{ws}\n  secure:\n    type: ws\n    \
                 bind: 127.0.0.1:{wss}\n    ssl: true\n    certfile: {}\n    keyfile: {}\n\
                 plugins:\n  amqtt.plugins.logging_amqtt.EventLoggerPlugin:\n  \
                 amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n",
                pki.server_cert.display(),
                pki.server_key.display()
            ),
        );
        let log = std::fs::File::create(dir.path("amqtt.log")).unwrap();
        let child = Command::new(amqtt_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("amqtt starts");
        for port in [ws, wss] {
            wait_for_listener(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20));
        }
        Amqtt { ws, wss, child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("amqtt.log")).unwrap_or_default()
    }
}

impl Drop for Amqtt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn over_ws(target: &str, transport: &str, extra: &str, count: u64, id: &str) -> String {
    format!(
        "name = \"ws\"\ntarget = \"{target}\"\nprotocol = \"mqtt\"\ntransport = \"{transport}\"\n{extra}\n\
         [ws]\npath = \"/mqtt\"\nheaders = {{ X-Sockcap-Test = \"{id}\" }}\n\
         [mqtt]\nclient_id = \"{id}-{{n}}\"\nkeep_alive = \"1s\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {count}, rate = 200 }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"2500ms\"\nexpect = {{ established = \"== {count}\", drops = \"== 0\" }}\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"mqtt-disconnect\", rate = 1000 }}\n"
    )
}

#[test]
fn amqtt_takes_mqtt_over_ws_and_wss() {
    let dir = TempDir::new("ws-amqtt-pki");
    let pki = Pki::new(&dir);
    let broker = Amqtt::start("ws", &pki);
    let tls = format!("[tls]\nca = \"{}\"\n", pki.ca.display());
    for (transport, port, extra, listener) in
        [("ws", broker.ws, String::new(), "default"), ("wss", broker.wss, tls, "secure")]
    {
        let toml = over_ws(&format!("127.0.0.1:{port}"), transport, &extra, 20, transport);
        let (out, report) = run_scenario(&format!("ws-amqtt-{transport}"), &toml, &[]);
        assert_exit(&out, 0);
        assert_matches_schema(&report);
        let ramp = phase(&report, "ramp");
        assert_eq!(ramp["latency_us"]["ws"]["count"], 20, "{transport}: {ramp}");
        let tls_count = if transport == "wss" { 20 } else { 0 };
        assert_eq!(ramp["latency_us"]["tls"]["count"], tls_count, "{transport}: {ramp}");
        assert_eq!(phase(&report, "hold")["errors"]["ping_timeout"], 0, "{transport}");
        assert_eq!(phase(&report, "close")["succeeded"], 20, "{transport}");
        let log = broker.log();
        let seen = log.matches(&format!("on listener '{listener}'")).count();
        assert_eq!(seen, 20, "{transport}: amqtt's {listener} listener saw {seen} connections:\n{log}");
    }
    let connects = broker.log().matches("'on_broker_client_connected' EVENT FIRED").count();
    assert_eq!(connects, 40, "MQTT connects amqtt counted");
}

#[test]
fn a_target_without_websocket_fails_the_upgrade() {
    // mosquitto's plain MQTT listener answers no HTTP upgrade.
    let broker = crate::support::Mosquitto::start("ws-refused", "");
    let toml = over_ws(&broker.addr(), "ws", "", 10, "nows");
    let (out, report) = run_scenario("ws-refused", &toml, &[]);
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["ws_upgrade"], 10, "{ramp}");
}

#[test]
fn the_embedded_target_holds_clients_over_ws_and_wss() {
    const HELD: u64 = 200;
    for transport in ["ws", "wss"] {
        let dir = TempDir::new(&format!("ws-embedded-{transport}"));
        let toml = format!(
            "name = \"held\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\ntransport = \"{transport}\"\n\
             [mqtt]\nkeep_alive = \"30s\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = {HELD}, rate = 1000 }}\n\
             [[phase]]\nname = \"hold\"\nhold = \"2s\"\n\
             expect = {{ established = \"== {HELD}\", \"server.established\" = \"== {HELD}\" }}\n"
        );
        let (mut run, json) = start_run(&dir, &toml, &[]);
        let port = embedded_port(run.id());
        Progress::of(&mut run).wait_for_phase("hold", Duration::from_secs(60));
        wait_for_established(port, HELD, Duration::from_secs(10));
        let client = ss_states(&format!("( dport = :{port} )")).get("established").copied().unwrap_or(0);
        let server = ss_states(&format!("( sport = :{port} )")).get("established").copied().unwrap_or(0);
        let status = wait_with_timeout(&mut run, Duration::from_secs(60));
        let report = report(&json);
        assert_eq!((client, server), (HELD, HELD), "{transport}: ss both sides");
        let ramp = phase(&report, "ramp");
        assert_eq!(ramp["latency_us"]["ws"]["count"], HELD, "{transport}: {ramp}");
        assert_eq!(ramp["latency_us"]["handshake"]["count"], HELD, "{transport}: {ramp}");
        assert_eq!(status.code(), Some(0), "{transport}: {}", report["phases"]);
    }
}

/// Close modes over tls, ws and wss on the embedded target leave their TIME_WAIT where
/// the transport's close order puts it, as the census counts it: rst leaves none; fin
/// is the client's first over TLS (the target answers the close_notify and waits for the
/// client's FIN) and the target's over WebSocket (RFC 6455: the server closes first);
/// the target closes first on MQTT's DISCONNECT. Before, a TLS fin left about 1 in 4
/// TIME_WAITs on the target (its FIN raced the client's), and a wss close ended in RSTs.
#[test]
fn close_modes_over_tls_and_websocket_leave_time_wait_where_expected() {
    for (transport, fin_client, fin_server) in [("tls", 50, 0), ("ws", 0, 50), ("wss", 0, 50)] {
        let toml = format!(
            "name = \"closes\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\ntransport = \"{transport}\"\n\
             [[phase]]\nname = \"ramp\"\nconnect = {{ count = 150, rate = 1000 }}\n\
             [[phase]]\nname = \"rst\"\nclose = {{ how = \"rst\", rate = 1000, count = 50 }}\n\
             expect = {{ established = \"== 100\", time_wait = \"== 0\", \"server.time_wait\" = \"== 0\" }}\n\
             [[phase]]\nname = \"fin\"\nclose = {{ how = \"fin\", rate = 1000, count = 50 }}\n\
             expect = {{ established = \"== 50\", time_wait = \"== {fin_client}\", \"server.time_wait\" = \"== {fin_server}\" }}\n\
             [[phase]]\nname = \"disconnect\"\nclose = {{ how = \"mqtt-disconnect\", rate = 1000, count = 50 }}\n\
             expect = {{ established = \"== 0\", time_wait = \"== {fin_client}\", \"server.time_wait\" = \"== {}\" }}\n",
            fin_server + 50
        );
        let (out, report) = run_scenario(&format!("closes-{transport}"), &toml, &[]);
        let failed: Vec<_> = report["phases"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["expectations"].as_array().unwrap().iter().filter(|e| e["passed"] == false).cloned())
            .collect();
        assert!(failed.is_empty(), "{transport}: {failed:#?}");
        assert_exit(&out, 0);
    }
}
