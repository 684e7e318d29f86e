//! `--metrics ADDR`: a real Prometheus (Debian's `prometheus`, started by the test on
//! loopback with its own config) scrapes a run holding connections and its query API
//! returns the established count that `ss` shows; the text is OpenMetrics with a
//! `# TYPE` for every family and the shard's label on a shard; a silent scraper neither
//! blocks the others nor holds up the run's end; a bad or busy address is refused
//! before anything connects; `probe --watch` serves its census too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const CLIENTS: u64 = 400;

fn holding(hold: &str) -> String {
    format!(
        r#"name = "metrics"
target = "embedded"
protocol = "mqtt"

[[phase]]
name = "ramp"
connect = {{ count = {CLIENTS}, rate = 2000 }}

[[phase]]
name = "hold"
hold = "{hold}"

[[phase]]
name = "close"
close = {{ how = "mqtt-disconnect", rate = 4000 }}
"#
    )
}

/// A command's stderr, line by line, read on a thread of its own.
struct Stderr(Receiver<String>);

impl Stderr {
    fn of(child: &mut Child) -> Stderr {
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Stderr(rx)
    }

    /// Wait for a line containing `text`; returns it.
    fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match self.0.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with `{text}` within {within:?}; stderr: {seen:#?}"),
            }
        }
    }

    /// The address of `sockcap: metrics on http://ADDR/metrics`.
    fn metrics_addr(&self) -> SocketAddr {
        let line = self.wait_for("sockcap: metrics on http://", Duration::from_secs(20));
        let addr = line.trim_start_matches("sockcap: metrics on http://").trim_end_matches("/metrics");
        addr.parse().unwrap_or_else(|e| panic!("`{line}` names no address: {e}"))
    }
}

/// `GET path` over HTTP/1.1, under a deadline: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the response arrives within 5 s");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_string())
}

/// A Prometheus server started by the test on a free loopback port, scraping `target`
/// every second; killed (by its pid) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.exists())
            .expect("Prometheus is not installed: install it (`apt-get install -y prometheus`, as in .ci/run)");
        let dir = TempDir::new("prometheus");
        let config = dir.file(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sockcap\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--storage.tsdb.path={}", dir.path("tsdb").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() || get(addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "Prometheus was not ready at {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// The value of an instant query's single series; `None` while it has no sample.
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = get(self.addr, &format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(status, 200, "query `{promql}`: {body}");
        let answer: Value = serde_json::from_str(&body).expect("the query API answers JSON");
        let result = answer["data"]["result"].as_array().expect("a result vector");
        assert!(result.len() <= 1, "`{promql}` matched several series: {body}");
        result.first().map(|series| series["value"][1].as_str().unwrap().parse().expect("a number"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encode a PromQL query for a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn interrupt(run: &Child) {
    // SAFETY: a signal to the process this test started.
    assert_eq!(unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGINT) }, 0);
}

#[test]
fn prometheus_scrapes_the_established_count_that_ss_shows() {
    let dir = TempDir::new("metrics-prometheus");
    let (mut run, _json) = start_run(&dir, &holding("60s"), &["--metrics", "127.0.0.1:0"]);
    let stderr = Stderr::of(&mut run);
    let metrics = stderr.metrics_addr();
    stderr.wait_for("] hold (", Duration::from_secs(30));
    let port = embedded_port(run.id());
    let prometheus = Prometheus::start(metrics);
    let client = r#"sockcap_sockets{side="client",state="established",job="sockcap"}"#;
    let server = r#"sockcap_sockets{side="server",state="established",job="sockcap"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.query(client).is_none() {
        assert!(Instant::now() < deadline, "Prometheus had no sample of {client} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_agree("Prometheus and ss, client side", || {
        let ss = ss_states(&format!("( dport = :{port} )")).get("established").copied().unwrap_or(0);
        (prometheus.query(client).map(|v| v as u64), Some(ss))
    });
    assert_agree("Prometheus and ss, server side", || {
        let ss = ss_states(&format!("( sport = :{port} )")).get("established").copied().unwrap_or(0);
        (prometheus.query(server).map(|v| v as u64), Some(ss))
    });
    assert_eq!(prometheus.query(client), Some(CLIENTS as f64), "the hold holds every client");
    assert_eq!(prometheus.query(r#"sockcap_phase_info{name="hold"}"#), Some(1.0), "the phase is `hold`");
    let ramped = prometheus.query(r#"sockcap_operations_total{kind="connect",result="succeeded"}"#);
    assert_eq!(ramped, Some(CLIENTS as f64));
    interrupt(&run);
    wait_with_timeout(&mut run, Duration::from_secs(30));
    assert!(TcpStream::connect(metrics).is_err(), "the metrics server stopped with the run");
}

/// Every sample's family has its `# TYPE`, the text ends with `# EOF`, and every
/// sample carries the label `shard="1/2"`.
fn assert_openmetrics(text: &str, shard: &str) {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF: {text}");
    let typed: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_once(' ').expect("# TYPE NAME TYPE"))
        .collect();
    assert!(typed.len() >= 8, "families: {typed:?}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = typed.iter().find(|(family, kind)| {
            let suffixes: &[&str] = match *kind {
                "counter" => &["_total"],
                "info" => &["_info"],
                "histogram" => &["_sum", "_count", "_bucket"],
                _ => &[""],
            };
            suffixes.iter().any(|s| name.strip_suffix(s) == Some(family))
        });
        assert!(family.is_some(), "`{line}` belongs to no family with a # TYPE");
        assert!(line.contains(&format!("shard=\"{shard}\"")), "`{line}` lacks the shard's label");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "`{line}`: the value is not a number");
    }
    for family in ["sockcap_sockets", "sockcap_operations", "sockcap_errors", "sockcap_latency_seconds"] {
        assert!(typed.iter().any(|(name, _)| *name == family), "no family {family}: {typed:?}");
    }
}

/// Every metric docs/grafana-sockcap.json queries is one sockcap serves.
fn assert_dashboard_queries_served(text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-sockcap.json");
    let dashboard = std::fs::read_to_string(&path).expect("docs/grafana-sockcap.json");
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    let queried: std::collections::BTreeSet<&str> = dashboard
        .match_indices("sockcap_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    assert!(queried.len() >= 4, "{queried:?}");
    for name in queried {
        assert!(text.lines().any(|l| l.starts_with(&format!("{name}{{"))), "the dashboard queries {name}, not served");
    }
}

#[test]
fn a_shard_serves_openmetrics_with_its_label_and_a_silent_scraper_holds_nothing_up() {
    let dir = TempDir::new("metrics-shard");
    let (mut run, _json) = start_run(&dir, &holding("3s"), &["--metrics", "127.0.0.1:0", "--shard", "1/2"]);
    let stderr = Stderr::of(&mut run);
    let metrics = stderr.metrics_addr();
    // Silent scrapers: connected, sending nothing, kept open to the run's end.
    let mut silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(metrics).expect("connects")).collect();
    stderr.wait_for("] hold (", Duration::from_secs(30));
    let asked = Instant::now();
    let (status, text) = get(metrics, "/metrics");
    // Under the 5 s a silent scraper may hold its own connection.
    assert!(asked.elapsed() < Duration::from_secs(4), "a scrape beside silent ones took {:?}", asked.elapsed());
    assert_eq!(status, 200, "{text}");
    assert_openmetrics(&text, "1/2");
    let held = format!("sockcap_sockets{{shard=\"1/2\",side=\"client\",state=\"established\"}} {}", CLIENTS / 2);
    assert!(text.contains(&held), "the shard holds its half: {text}");
    assert_eq!(get(metrics, "/nothing").0, 404);
    assert_dashboard_queries_served(&text);
    // The run ends on time (3 s of hold, the close) although the silent scrapers stay.
    let status = wait_with_timeout(&mut run, Duration::from_secs(25));
    assert_eq!(status.code(), Some(0), "the shard's run ended: {:?}", stderr.0.try_iter().collect::<Vec<_>>());
    for stream in &mut silent {
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(matches!(read, Ok(0) | Err(_)), "a silent scraper's connection was closed: {read:?}");
        assert!(!matches!(read, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock), "closed, not waiting");
    }
}

#[test]
fn a_bad_or_busy_metrics_address_is_refused_before_anything_connects() {
    let dir = TempDir::new("metrics-bad");
    let scenario = dir.file("s.toml", &holding("1s"));
    let out = run(&["run", scenario.to_str().unwrap(), "--metrics", "localhost"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics") && stderr.contains("127.0.0.1:9464"), "{stderr}");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(&["run", scenario.to_str().unwrap(), "--metrics", &addr]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--metrics {addr}")) && stderr.contains("free port"), "{stderr}");
    assert!(!stderr.contains("] ramp ("), "no phase started: {stderr}");
    busy.set_nonblocking(true).unwrap();
    assert!(busy.accept().is_err(), "nothing connected to the busy port");
}

#[test]
fn probe_watch_serves_its_census() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut probe = sockcap()
        .args(["probe", "--port", &port, "--watch", "200ms", "--json", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("probe starts");
    let metrics = Stderr::of(&mut probe).metrics_addr();
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = r#"sockcap_sockets{side="server",state="listen"} 1"#;
    let text = loop {
        let (status, text) = get(metrics, "/metrics");
        if status == 200 && text.contains(listening) {
            break text;
        }
        assert!(Instant::now() < deadline, "no census served within 10 s: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains(r#"sockcap_sockets{side="client",state="established"} 0"#), "{text}");
    let _ = probe.kill();
    let _ = probe.wait();
    let out = run(&["probe", "--port", &port, "--metrics", "127.0.0.1:0"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch"));
}

/// The scrapers answered at once are bounded (16): past them a scraper is told 503 at
/// once rather than queued, and a slot is free again when its scraper leaves.
#[test]
fn scrapers_past_the_bound_get_503_at_once() {
    let mut probe = sockcap()
        .args(["probe", "--port", "1", "--watch", "200ms", "--json", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("probe starts");
    let metrics = Stderr::of(&mut probe).metrics_addr();
    let silent: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(metrics).expect("connects")).collect();
    // Each silent connection holds its slot once accepted: ask until the bound shows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let asked = Instant::now();
        let (status, _) = get(metrics, "/metrics");
        if status == 503 {
            assert!(asked.elapsed() < Duration::from_secs(1), "the 503 took {:?}", asked.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "a 17th scraper was still answered {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(metrics, "/metrics").0 != 200 {
        assert!(Instant::now() < deadline, "no slot came back once the silent scrapers left");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = probe.kill();
    let _ = probe.wait();
}

/// Without `--metrics` a run listens on nothing itself (its embedded target is a child).
#[test]
fn a_run_without_metrics_opens_no_port() {
    let dir = TempDir::new("metrics-none");
    let (mut run, _json) = start_run(&dir, &holding("2s"), &[]);
    let stderr = Stderr::of(&mut run);
    stderr.wait_for("] hold (", Duration::from_secs(30));
    let out = Command::new("ss").args(["-Htlnp"]).output().expect("ss runs");
    let listening = String::from_utf8_lossy(&out.stdout);
    let own = format!("pid={},", run.id());
    let serve = children_running(run.id(), "serve");
    assert!(
        !serve.is_empty() && listening.contains(&format!("pid={},", serve[0])),
        "ss -p sees the target: {listening}"
    );
    assert!(!listening.contains(&own), "the run listens: {listening}");
    let status = wait_with_timeout(&mut run, Duration::from_secs(25));
    assert_eq!(status.code(), Some(0));
}
