//! TLS (`transport = "tls"`): 300 MQTT clients held over TLS on the embedded target
//! (which makes its own certificate; the run trusts it), counted ESTABLISHED on both
//! sides by the report and by `ss`; and against a real mosquitto with a TLS listener
//! whose certificates the test makes with rcgen: TLS, mTLS (`require_certificate
//! true`) with and without a client certificate, a wrong CA (every connect
//! `tls_certificate`, exit 1), and session resumption on and off. mosquitto's log names
//! each client id that connected on its TLS-only listener.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{
    assert_exit, assert_matches_schema, embedded_port, phase, report, run_scenario, ss_states, start_run,
    wait_for_established, wait_with_timeout, Mosquitto, Progress, TempDir,
};

const HELD: u64 = 300;

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and
/// a second CA that signed neither, as PEM files in `dir`.
pub(crate) struct Pki {
    pub ca: PathBuf,
    other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    pub(crate) fn new(dir: &TempDir) -> Pki {
        let ca = make_ca("sockcap test CA");
        let other = make_ca("some other CA");
        let leaf = |names: Vec<String>, cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(names).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            (params.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1");
        let (client, client_key) = leaf(Vec::new(), "sockcap-client");
        Pki {
            ca: dir.file("ca.pem", &ca.pem()),
            other_ca: dir.file("other-ca.pem", &other.pem()),
            server_cert: dir.file("server.pem", &server),
            server_key: dir.file("server.key", &server_key),
            client_cert: dir.file("client.pem", &client),
            client_key: dir.file("client.key", &client_key),
        }
    }

    /// mosquitto's TLS settings for its listener.
    fn listener(&self, require_certificate: bool) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
            self.ca.display(),
            self.server_cert.display(),
            self.server_key.display()
        )
    }
}

fn mqtt_over_tls(target: &str, tls: &str, count: u64, id: &str) -> String {
    mqtt_over_tls_after(target, tls, "", count, id)
}

/// [`mqtt_over_tls`] with `phases` before the ramp.
fn mqtt_over_tls_after(target: &str, tls: &str, phases: &str, count: u64, id: &str) -> String {
    format!(
        "name = \"tls\"\ntarget = \"{target}\"\nprotocol = \"mqtt\"\ntransport = \"tls\"\n{tls}\n\
         [mqtt]\nclient_id = \"{id}-{{n}}\"\nkeep_alive = \"60s\"\n{phases}\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {count}, rate = 200 }}\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"mqtt-disconnect\", rate = 1000 }}\n"
    )
}

#[test]
fn the_embedded_target_holds_300_clients_over_tls() {
    // A debug build's full TLS handshakes on a loaded 2-core runner take seconds at
    // 1,000/s: a modest rate, and a bound on tls_p99 that judges a measured figure
    // without making this a speed test (bench/tls.sh measures speed).
    let dir = TempDir::new("tls-embedded");
    let toml = format!(
        "name = \"tls held\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\ntransport = \"tls\"\n\
         [mqtt]\nkeep_alive = \"30s\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = {HELD}, rate = 200, timeout = \"30s\" }}\n\
         expect = {{ established = \"== {HELD}\", \"server.established\" = \"== {HELD}\", tls_p99 = \"< 30s\" }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"3s\"\n\
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
    assert_matches_schema(&report);
    assert_eq!((client, server), (HELD, HELD), "ss: established toward and from the embedded port");
    assert_eq!(report["scenario"]["transport"], "tls");
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["latency_us"]["tls"]["count"], HELD, "{ramp}");
    assert_eq!(ramp["latency_us"]["handshake"]["count"], HELD, "{ramp}");
    // Layer by layer: TCP established, then TLS, then CONNACK.
    let p50 = |layer: &str| ramp["latency_us"][layer]["p50"].as_u64().unwrap();
    assert!(p50("connect") <= p50("tls") && p50("tls") <= p50("handshake"), "{}", ramp["latency_us"]);
    let hold = phase(&report, "hold");
    assert_eq!(hold["census"]["client"]["established"], HELD, "{hold}");
    assert_eq!(hold["census"]["server"]["established"], HELD, "{hold}");
    assert_eq!(status.code(), Some(0), "{}", report["phases"]);
}

#[test]
fn mosquitto_takes_tls_clients_and_resumes_their_sessions() {
    let dir = TempDir::new("tls-mosquitto");
    let pki = Pki::new(&dir);
    let broker = Mosquitto::start("tls", &pki.listener(false));
    let with = |resumption: bool| {
        format!("[tls]\nca = \"{}\"\nalpn = [\"mqtt\"]\nresumption = {resumption}\n", pki.ca.display())
    };
    // One connection first, whose session tickets the next phase's connections resume.
    let scenario = |resumption: bool, id: &str| {
        let first = "[[phase]]\nname = \"first\"\nconnect = { count = 1, rate = 1 }\n";
        mqtt_over_tls_after(&broker.addr(), &with(resumption), first, 20, id)
    };
    let (out, report) = run_scenario("tls-resumed", &scenario(true, "tls"), &[]);
    assert_exit(&out, 0);
    assert_matches_schema(&report);
    assert_eq!(phase(&report, "first")["tls_resumed"], 0);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["latency_us"]["tls"]["count"], 20, "{ramp}");
    assert!(ramp["tls_resumed"].as_u64().unwrap() >= 1, "{ramp}");
    let log = broker.log();
    for n in 1..=20 {
        assert!(log.contains(&format!(" as tls-{n} ")), "tls-{n} did not connect on the TLS listener:\n{log}");
    }
    let (out, report) = run_scenario("tls-full", &scenario(false, "full"), &[]);
    assert_exit(&out, 0);
    let ramp = phase(&report, "ramp");
    assert_eq!((ramp["latency_us"]["tls"]["count"].as_u64(), ramp["tls_resumed"].as_u64()), (Some(20), Some(0)));
}

#[test]
fn mosquitto_requires_the_client_certificate_of_mtls() {
    let dir = TempDir::new("tls-mtls");
    let pki = Pki::new(&dir);
    let broker = Mosquitto::start("mtls", &pki.listener(true));
    let with_cert = format!(
        "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let (out, report) = run_scenario("mtls-cert", &mqtt_over_tls(&broker.addr(), &with_cert, 20, "mtls"), &[]);
    assert_exit(&out, 0);
    assert_eq!(phase(&report, "ramp")["succeeded"], 20);
    assert!(broker.log().contains(" as mtls-19 "), "{}", broker.log());
    // Without a certificate the broker refuses each one.
    let without = format!("[tls]\nca = \"{}\"\n", pki.ca.display());
    let (out, report) = run_scenario("mtls-none", &mqtt_over_tls(&broker.addr(), &without, 20, "anon"), &[]);
    assert_exit(&out, 1);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["tls_certificate"], 20, "{ramp}");
    assert_eq!(ramp["succeeded"], 0, "{ramp}");
    assert!(!broker.log().contains(" as anon-"), "{}", broker.log());
}

#[test]
fn a_wrong_ca_fails_every_connect_as_a_certificate_error() {
    let dir = TempDir::new("tls-wrong-ca-pki");
    let pki = Pki::new(&dir);
    let broker = Mosquitto::start("tls-wrong-ca", &pki.listener(false));
    let tls = format!("[tls]\nca = \"{}\"\n", pki.other_ca.display());
    let (out, report) = run_scenario("tls-wrong-ca", &mqtt_over_tls(&broker.addr(), &tls, 30, "wrong"), &[]);
    assert_exit(&out, 1);
    assert_matches_schema(&report);
    let ramp = phase(&report, "ramp");
    assert_eq!(ramp["errors"]["tls_certificate"], 30, "{ramp}");
    assert_eq!(ramp["succeeded"], 0, "{ramp}");
    // TCP was established each time: its latency is counted, TLS's is not.
    assert_eq!(ramp["latency_us"]["connect"]["count"], 30, "{ramp}");
    assert_eq!(ramp["latency_us"]["tls"]["count"], 0, "{ramp}");
    let notes = report["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("30 TLS handshakes")), "{notes:?}");
}

#[test]
fn bad_tls_input_names_the_file_and_field() {
    let dir = TempDir::new("tls-bad-input");
    let garbage = dir.file("garbage.pem", "not PEM at all\n");
    let cases = [
        (format!("ca = \"{}\"", dir.path("absent.pem").display()), "tls.ca", "absent.pem"),
        (format!("ca = \"{}\"", garbage.display()), "tls.ca", "garbage.pem"),
        (format!("insecure = true\nkey = \"{}\"", garbage.display()), "tls.cert", "without a certificate"),
    ];
    for (section, field, said) in cases {
        let toml = format!(
            "name = \"bad\"\ntarget = \"127.0.0.1:8883\"\nprotocol = \"mqtt\"\ntransport = \"tls\"\n[tls]\n{section}\n\
             [[phase]]\nhold = \"1s\"\n"
        );
        let stderr = crate::support::refused_scenario("tls-bad.toml", &toml);
        assert!(stderr.contains(field) && stderr.contains(said), "{section}: {stderr}");
    }
}

/// Held TLS connections ping through TLS and see the answers: mosquitto logs each
/// PINGREQ and PINGRESP, and no connection is lost to `ping_timeout`.
#[test]
fn held_tls_clients_ping_through_tls() {
    let dir = TempDir::new("tls-ping-pki");
    let pki = Pki::new(&dir);
    let broker = Mosquitto::start("tls-ping", &format!("{}log_type all\n", pki.listener(false)));
    let toml = format!(
        "name = \"tls ping\"\ntarget = \"{}\"\nprotocol = \"mqtt\"\ntransport = \"tls\"\n[tls]\nca = \"{}\"\n\
         [mqtt]\nclient_id = \"ping-{{n}}\"\nkeep_alive = \"1s\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 10, rate = 100 }}\n\
         [[phase]]\nname = \"hold\"\nhold = \"3500ms\"\nexpect = {{ established = \"== 10\", drops = \"== 0\" }}\n",
        broker.addr(),
        pki.ca.display()
    );
    let (out, report) = run_scenario("tls-ping", &toml, &[]);
    assert_exit(&out, 0);
    let hold = phase(&report, "hold");
    assert_eq!(hold["errors"]["ping_timeout"], 0, "{hold}");
    let log = broker.log();
    for n in 0..10 {
        assert!(log.contains(&format!("Received PINGREQ from ping-{n}")), "no PINGREQ from ping-{n}:\n{log}");
        assert!(log.contains(&format!("Sending PINGRESP to ping-{n}")), "no PINGRESP to ping-{n}:\n{log}");
    }
}

/// `sockcap serve --transport tls --workers 2`: the ready line names the CA it made;
/// clients trusting only that CA all connect, whichever of the two processes
/// SO_REUSEPORT hands them to (both serve the one certificate); SIGTERM removes the
/// private directory with the files.
#[test]
fn serve_workers_share_one_made_certificate() {
    use std::io::BufRead;
    let mut serve = crate::support::sockcap()
        .args(["serve", "--listen", &format!("127.0.0.1:{}", crate::support::free_port())])
        .args(["--workers", "2", "--transport", "tls"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sockcap serve starts");
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
    let addr = sockcap::embedded::parse_ready_line(&line).unwrap_or_else(|| panic!("no ready line: {line:?}"));
    let ca = PathBuf::from(line.trim_end().rsplit_once(" CA ").map(|(_, ca)| ca).expect("the CA in the ready line"));
    assert!(ca.is_file(), "{line}");
    let tls = format!("[tls]\nca = \"{}\"\n", ca.display());
    let (out, report) = run_scenario("tls-serve-workers", &mqtt_over_tls(&addr.to_string(), &tls, 100, "w"), &[]);
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_with_timeout(&mut serve, Duration::from_secs(10));
    assert_exit(&out, 0);
    assert_eq!(phase(&report, "ramp")["succeeded"], 100);
    assert!(status.success(), "{status}");
    assert!(!ca.parent().unwrap().exists(), "{} is left behind", ca.display());
}

/// Three client worker processes against the embedded target over wss: each worker
/// trusts the CA the target made (`sockcap worker --tls-ca`), and all 60 connect.
#[test]
fn client_workers_trust_the_embedded_targets_ca() {
    let toml = "name = \"workers over wss\"\ntarget = \"embedded\"\nprotocol = \"mqtt\"\ntransport = \"wss\"\n\
                [[phase]]\nname = \"ramp\"\nconnect = { count = 60, rate = 300 }\n\
                expect = { established = \"== 60\", \"server.established\" = \"== 60\" }\n";
    let (out, report) = run_scenario("tls-workers", toml, &["--workers", "3"]);
    assert_exit(&out, 0);
    assert_eq!(report["scenario"]["workers"], 3);
    let ramp = phase(&report, "ramp");
    assert_eq!(
        (ramp["latency_us"]["tls"]["count"].as_u64(), ramp["latency_us"]["ws"]["count"].as_u64()),
        (Some(60), Some(60))
    );
}

/// `insecure = true`: no CA given, the target's certificate (from a CA nobody trusts) is
/// taken, and the report says so: `tls_insecure`, a WARNING line and a note.
#[test]
fn insecure_connects_without_a_ca_and_says_so() {
    let dir = TempDir::new("tls-insecure-pki");
    let pki = Pki::new(&dir);
    let broker = Mosquitto::start("tls-insecure", &pki.listener(false));
    let (out, report) =
        run_scenario("tls-insecure", &mqtt_over_tls(&broker.addr(), "[tls]\ninsecure = true\n", 10, "insecure"), &[]);
    assert_exit(&out, 0);
    assert_eq!(report["scenario"]["tls_insecure"], true);
    assert_eq!(phase(&report, "ramp")["succeeded"], 10);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WARNING: TLS certificates NOT verified"), "{text}");
    assert!(report["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("NOT verified")));
}
