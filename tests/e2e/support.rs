//! What the end-to-end tests share: the real binary, a real mosquitto on a free port
//! with its own config, scenario files in a temporary directory, and `ss` as the
//! independent witness of socket states.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sockcap binary built for these tests.
pub fn sockcap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sockcap"))
}

/// Run sockcap to completion.
pub fn run(args: &[&str]) -> Output {
    sockcap().args(args).stdin(Stdio::null()).output().expect("sockcap runs")
}

/// The exit code, with stdout and stderr in the panic message when it is not `want`.
pub fn assert_exit(out: &Output, want: i32) {
    assert_eq!(
        out.status.code(),
        Some(want),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sockcap-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port no socket of any state uses, below ip_local_port_range (see
/// [`sockcap::embedded::quiet_port`]): a census or `ss` filter by this port number counts
/// this test's sockets only.
pub fn free_port() -> u16 {
    let port = sockcap::embedded::quiet_port();
    assert_ne!(port, 0, "no free port below the ephemeral range");
    port
}

/// Raise this process's soft descriptor limit so children (mosquitto) inherit it.
pub fn raise_nofile() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE.set(hard, hard).expect("setrlimit");
}

/// This process's RLIMIT_NOFILE hard limit: what the processes it starts may be given.
pub fn hard_nofile() -> u64 {
    rlimit::Resource::NOFILE.get().expect("getrlimit").1
}

/// Start `command`'s process with RLIMIT_NOFILE set to `n` (soft and hard), so what it
/// does past its descriptors does not depend on the runner's limit. `n` must not exceed
/// [`hard_nofile`] (raising a hard limit needs CAP_SYS_RESOURCE): checked here, with the fix.
pub fn limit_nofile(command: &mut Command, n: u64) -> &mut Command {
    let hard = hard_nofile();
    assert!(
        n <= hard,
        "this test runs {:?} under a descriptor limit of {n}, above this runner's hard limit of {hard}: \
         run the tests with `ulimit -Hn {n}` or more",
        command.get_program()
    );
    let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: setrlimit is async-signal-safe, and `limit` is a plain value copied in.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    command
}

/// Run sockcap to completion under a descriptor limit of `n` (see [`limit_nofile`]).
pub fn run_with_nofile(args: &[&str], n: u64) -> Output {
    limit_nofile(&mut sockcap(), n).args(args).stdin(Stdio::null()).output().expect("sockcap runs")
}

/// A mosquitto started by a test, on its own port with its own config; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Mosquitto {
    /// Start mosquitto on a free loopback port; `extra` is appended to its config
    /// (anonymous clients are allowed unless `extra` says otherwise).
    pub fn start(tag: &str, extra: &str) -> Mosquitto {
        raise_nofile();
        Mosquitto::spawn(tag, extra, None)
    }

    /// [`Mosquitto::start`] with RLIMIT_NOFILE set to `nofile` (soft and hard) in the
    /// child, so its descriptor limit does not depend on the machine's.
    pub fn start_with_nofile(tag: &str, extra: &str, nofile: u64) -> Mosquitto {
        Mosquitto::spawn(tag, extra, Some(nofile))
    }

    /// [`Mosquitto::start`] on a given port (a broker started again where one was).
    #[allow(dead_code)] // used by the reconnect tests
    pub fn start_on(tag: &str, port: u16, extra: &str) -> Mosquitto {
        raise_nofile();
        Mosquitto::spawn_on(tag, port, extra, None)
    }

    fn spawn(tag: &str, extra: &str, nofile: Option<u64>) -> Mosquitto {
        Mosquitto::spawn_on(tag, free_port(), extra, nofile)
    }

    fn spawn_on(tag: &str, port: u16, extra: &str, nofile: Option<u64>) -> Mosquitto {
        let dir = TempDir::new(&format!("mosquitto-{tag}"));
        let anonymous = if extra.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" };
        let conf = dir.file(
            "mosquitto.conf",
            &format!("listener {port} 127.0.0.1\n{anonymous}persistence false\nlog_dest stderr\n{extra}\n"),
        );
        let log = std::fs::File::create(dir.path("mosquitto.log")).expect("log file");
        let mut command = Command::new(mosquitto_binary());
        command.arg("-c").arg(&conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        if let Some(n) = nofile {
            limit_nofile(&mut command, n);
        }
        let child = command.spawn().expect("mosquitto starts (apt-get install -y mosquitto)");
        wait_for_listener(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10));
        Mosquitto { port, child, _dir: dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What mosquitto logged so far (to stderr: connections, with their client ids).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

/// Wait until a socket listens at `addr` (asked of `ss`, so no test connection is
/// left in TIME_WAIT to be counted later).
pub fn wait_for_listener(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    let filter = format!("( sport = :{} )", addr.port());
    while !ss_states(&filter).contains_key("listen") {
        assert!(Instant::now() < deadline, "nothing listened at {addr} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Count sockets by state as `ss` sees them, for an ss filter such as `( dport = :1883 )`.
/// Keys are sockcap's state keys (`established`, `time_wait`, ...).
pub fn ss_states(filter: &str) -> BTreeMap<String, u64> {
    ss_count(Command::new("ss").args(["-Htan", "state", "all", filter]))
}

/// [`ss_states`] inside the named network namespace (`ss -N`).
pub fn ss_states_in(netns: &str, filter: &str) -> BTreeMap<String, u64> {
    ss_count(Command::new("ss").args(["-N", netns, "-Htan", "state", "all", filter]))
}

fn ss_count(ss: &mut Command) -> BTreeMap<String, u64> {
    let out = ss.output().expect("ss runs (apt-get install -y iproute2)");
    assert!(out.status.success(), "ss failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(state) = line.split_whitespace().next() else { continue };
        let key = match state {
            "ESTAB" => "established",
            "SYN-SENT" => "syn_sent",
            "SYN-RECV" => "syn_recv",
            "FIN-WAIT-1" => "fin_wait1",
            "FIN-WAIT-2" => "fin_wait2",
            "TIME-WAIT" => "time_wait",
            "UNCONN" | "CLOSE" => "close",
            "CLOSE-WAIT" => "close_wait",
            "LAST-ACK" => "last_ack",
            "LISTEN" => "listen",
            "CLOSING" => "closing",
            other => panic!("ss printed an unknown state {other}"),
        };
        *counts.entry(key.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Read a JSON report.
pub fn report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("report {} missing: {e}", path.display()));
    serde_json::from_str(&text).expect("report is JSON")
}

/// The phase named `name` of a report.
pub fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {report}"))
}

/// The validator of `docs/report.schema.json`.
pub fn report_schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/report.schema.json"))
        .expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

/// A JSON report matches `docs/report.schema.json`, or the test fails naming each misfit.
pub fn assert_matches_schema(report: &Value) {
    let validator = report_schema();
    let errors: Vec<String> =
        validator.iter_errors(report).map(|e| format!("{}: {e}", e.instance_path().as_str())).collect();
    assert!(errors.is_empty(), "the report does not match docs/report.schema.json:\n{}", errors.join("\n"));
}

/// `phase.census.<side>.<state>` as a number.
pub fn census(phase: &Value, side: &str, state: &str) -> u64 {
    phase["census"][side][state].as_u64().unwrap_or_else(|| panic!("census.{side}.{state} missing in {phase}"))
}

/// Write `toml` as a scenario file, run it with `--json --quiet` (and `extra` arguments),
/// and return the process output and the report it wrote.
pub fn run_scenario(tag: &str, toml: &str, extra: &[&str]) -> (Output, Value) {
    let dir = TempDir::new(tag);
    let scenario = dir.file("scenario.toml", toml);
    let json = dir.path("report.json");
    let mut args = vec!["run", scenario.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let report = report(&json);
    (out, report)
}

/// Write `toml` as `name` and run it; it must be refused with exit 2. Returns stderr.
pub fn refused_scenario(name: &str, toml: &str) -> String {
    let dir = TempDir::new(name.trim_end_matches(".toml"));
    let file = dir.file(name, toml);
    let out = run(&["run", file.to_str().unwrap()]);
    assert_exit(&out, 2);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert that two readings of the machine's sockets agree. Other tests change the socket
/// table meanwhile, and the kernel resumes a long dump (sock_diag, /proc/net/tcp) at a
/// hash bucket and a position in it: a socket inserted or removed in that bucket between
/// two parts of a dump makes the next socket be skipped or read twice. So a pair that
/// differs is read again, up to 5 times; a real disagreement persists.
pub fn assert_agree<T: PartialEq + std::fmt::Debug>(what: &str, mut read: impl FnMut() -> (T, T)) {
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (a, b) = read();
        if a == b {
            return;
        }
        seen.push((a, b));
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: the readings differ every time: {seen:#?}");
}

/// Wait until `ss` sees `n` established client sockets toward `port`.
pub fn wait_for_established(port: u16, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        // At least: another program's socket may share the port number.
        let seen = ss_states(&format!("( dport = :{port} )")).get("established").copied().unwrap_or(0);
        if seen >= n {
            return;
        }
        assert!(Instant::now() < deadline, "ss saw {seen} of {n} established toward :{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `command` to its end with stdout and stderr captured; past `within` it is killed
/// (by its pid) and the test panics.
pub fn output_within(command: &mut Command, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait_with_timeout(&mut child, within);
    Output { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

/// Wait for `child` to exit; past `within` it is killed (by its pid) and the test panics.
pub fn wait_with_timeout(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The children of process `pid` running `sockcap <command>`.
pub fn children_running(pid: u32, command: &str) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    children.retain(|c| {
        let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).nth(1) == Some(command.as_bytes())
    });
    children
}

/// Wait until none of `pids` exists any more (a zombie still counts as existing).
pub fn assert_gone(pids: &[u32], within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while pids.iter().any(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) {
        assert!(std::time::Instant::now() < deadline, "worker processes {pids:?} outlived the run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn start_run(dir: &TempDir, toml: &str, extra: &[&str]) -> (Child, std::path::PathBuf) {
    start_run_as(sockcap(), dir, toml, extra)
}

/// [`start_run`] under a descriptor limit of `nofile` (see [`limit_nofile`]).
#[allow(dead_code)] // used by the capacity tests
pub fn start_run_with_nofile(dir: &TempDir, toml: &str, extra: &[&str], nofile: u64) -> (Child, std::path::PathBuf) {
    let mut command = sockcap();
    limit_nofile(&mut command, nofile);
    start_run_as(command, dir, toml, extra)
}

fn start_run_as(mut command: Command, dir: &TempDir, toml: &str, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let scenario = dir.file("s.toml", toml);
    let json = dir.path("out.json");
    let child = command
        .args(["run", scenario.to_str().unwrap(), "--json", json.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sockcap run starts");
    (child, json)
}

/// The progress lines of a run started without `--quiet`, stderr piped: not on a
/// terminal, stderr gets the line `[k/n] NAME (kind): ...` once a phase's clock starts.
/// Sockets seen by `ss` are no such sign: a ramp's last connection is up before the
/// ramp's closing census, and a signal in between ends the run before the next phase.
/// Read on a thread of its own, which drains stderr to its end.
pub struct Progress {
    lines: std::sync::mpsc::Receiver<String>,
}

impl Progress {
    pub fn of(run: &mut Child) -> Progress {
        use std::io::BufRead;
        let stderr = run.stderr.take().expect("the run's stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Progress { lines }
    }

    /// Wait until phase `name` has started; returns its first progress line.
    pub fn wait_for_phase(&mut self, name: &str, within: Duration) -> String {
        let started = format!("] {name} (");
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with('[') && line.contains(&started) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("phase `{name}` did not start within {within:?}; stderr: {seen:#?}"),
            }
        }
    }
}

/// Wait until `run` (started without `--quiet`, stderr piped) has started phase `name`
/// (see [`Progress`]).
pub fn wait_for_phase(run: &mut Child, name: &str, within: Duration) {
    Progress::of(run).wait_for_phase(name, within);
}

/// Wait for the run's workers to appear.
pub fn wait_for_workers(run: u32, n: usize) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let workers = children_running(run, "worker");
        if workers.len() == n {
            return workers;
        }
        assert!(std::time::Instant::now() < deadline, "saw workers {workers:?}, want {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The port the run's embedded target (its `sockcap serve` child) listens on.
#[allow(dead_code)] // used by the capacity and TLS tests
pub fn embedded_port(run: u32) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(serve) = children_running(run, "serve").first() {
            let out = std::process::Command::new("ss").args(["-Htlnp"]).output().unwrap();
            let port = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&format!("pid={serve},")))
                .find_map(|l| l.split_whitespace().nth(3)?.rsplit_once(':')?.1.parse::<u16>().ok());
            if let Some(port) = port {
                return port;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the run's embedded target does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}
