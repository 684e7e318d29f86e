//! Report paths (issue 12, items 1 and 4), with the real binary and the embedded target:
//! a report is written to what its path names and never over it (a symlink is followed,
//! a FIFO and a character device are written in place), paths that would destroy an
//! input or share a file are refused before any connect, `-` is standard output, and a
//! closed standard output neither panics nor loses the report files.
//!
//! `/dev/null` and `/dev/full` are the machine's own nodes: with the fix they are only
//! opened and written. Without it, a root run renamed a regular file over them, and a
//! run without root failed to (exit 3); both fail these tests.

use std::fs;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_exit, output_within, sockcap, TempDir};

/// 20 TCP connections to the embedded target: a run of a second or so.
const SCENARIO: &str = r#"
name = "report outputs"
target = "embedded"
protocol = "tcp"

[[phase]]
name = "ramp"
connect = { count = 20, rate = 2000 }
expect = { established = "== 20" }
"#;

/// A scenario toward `addr`, for runs that must be refused before any connect.
fn scenario_toward(addr: &str) -> String {
    format!(
        "name = \"refused outputs\"\ntarget = \"{addr}\"\nprotocol = \"tcp\"\n\n[[phase]]\nname = \"ramp\"\n\
         connect = {{ count = 5, rate = 1000 }}\n"
    )
}

/// Run `sockcap run SCENARIO ARGS...` in `dir`, within a minute.
fn run_in(dir: &TempDir, scenario: &Path, args: &[&str]) -> Output {
    let mut command = sockcap();
    command.current_dir(&dir.0).arg("run").arg(scenario).arg("--quiet").args(args);
    output_within(&mut command, Duration::from_secs(60))
}

/// The text is a sockcap JSON report.
fn assert_report(text: &str, what: &str) {
    let report: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text:.400}"));
    assert_eq!(report["schema"], "sockcap.report/1", "{what}");
    assert_eq!(report["phases"][0]["name"], "ramp", "{what}");
}

/// The file type and device number of a node, not following a symlink.
fn node(path: &Path) -> (fs::FileType, u64) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.file_type(), meta.rdev())
}

#[test]
fn a_symlink_is_followed_and_stays_a_link() {
    let dir = TempDir::new("outputs-symlink");
    let scenario = dir.file("s.toml", SCENARIO);
    fs::create_dir(dir.path("reports")).unwrap();
    std::os::unix::fs::symlink("reports/target.json", dir.path("link.json")).unwrap();
    // Once toward a target that is not there yet, once over the file the first run wrote.
    for _ in 0..2 {
        let out = run_in(&dir, &scenario, &["--json", "link.json"]);
        assert_exit(&out, 0);
        assert!(node(&dir.path("link.json")).0.is_symlink(), "link.json is still a symlink");
        assert_report(&fs::read_to_string(dir.path("reports/target.json")).unwrap(), "the link's target");
    }
    let names: Vec<_> = fs::read_dir(dir.path("reports")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["target.json"], "no temporary file is left beside the target");
}

#[test]
fn a_fifo_is_written_in_place() {
    let dir = TempDir::new("outputs-fifo");
    let scenario = dir.file("s.toml", SCENARIO);
    let fifo = dir.path("report.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let (tx, rx) = mpsc::channel();
    {
        let fifo = fifo.clone();
        // Opening blocks until the run opens the FIFO for writing.
        std::thread::spawn(move || tx.send(fs::read_to_string(fifo)));
    }
    let out = run_in(&dir, &scenario, &["--json", fifo.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(node(&fifo).0.is_fifo(), "the FIFO was replaced: {:?}", node(&fifo).0);
    let read = rx.recv_timeout(Duration::from_secs(10)).expect("the reader got the report through the FIFO");
    assert_report(&read.unwrap(), "what the FIFO's reader got");
}

#[test]
fn dev_null_is_written_in_place() {
    let dir = TempDir::new("outputs-null");
    let scenario = dir.file("s.toml", SCENARIO);
    let null = Path::new("/dev/null");
    let before = node(null);
    assert!(before.0.is_char_device(), "/dev/null is a character device before the run");
    let out = run_in(&dir, &scenario, &["--json", "/dev/null"]);
    let after = node(null);
    assert!(after.0.is_char_device() && after.1 == before.1, "/dev/null was replaced: {after:?}");
    assert_exit(&out, 0);
}

#[test]
fn dev_full_is_an_error_that_names_it_and_stays_a_device() {
    let dir = TempDir::new("outputs-full");
    let scenario = dir.file("s.toml", SCENARIO);
    let full = Path::new("/dev/full");
    let before = node(full);
    assert!(before.0.is_char_device(), "/dev/full is a character device before the run");
    let out = run_in(&dir, &scenario, &["--json", "/dev/full", "--junit", "r.xml"]);
    let after = node(full);
    assert!(after.0.is_char_device() && after.1 == before.1, "/dev/full was replaced: {after:?}");
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--json: writing /dev/full") && stderr.contains("No space left"), "{stderr}");
    assert!(dir.path("r.xml").is_file(), "the other report is written all the same");
}

/// A listener that counts the connections the run made to it: none, when refused.
struct Witness(TcpListener);

impl Witness {
    fn new() -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Witness(listener)
    }

    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn assert_no_connection(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the run connected before it was refused: {other:?}"),
        }
    }
}

#[test]
fn two_outputs_on_one_file_are_refused_before_any_connect() {
    let dir = TempDir::new("outputs-twice");
    let witness = Witness::new();
    let scenario = dir.file("s.toml", &scenario_toward(&witness.addr()));
    let out = run_in(&dir, &scenario, &["--json", "r.json", "--html", "./r.json"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--json r.json and --html ./r.json name the same file"), "{stderr}");
    witness.assert_no_connection();
    assert!(!dir.path("r.json").exists(), "nothing was written");
}

#[test]
fn a_report_over_the_scenario_is_refused_before_any_connect() {
    let dir = TempDir::new("outputs-scenario");
    let witness = Witness::new();
    let toml = scenario_toward(&witness.addr());
    let scenario = dir.file("s.toml", &toml);
    let out = run_in(&dir, &scenario, &["--junit", scenario.to_str().unwrap()]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is the scenario file"), "{stderr}");
    witness.assert_no_connection();
    assert_eq!(fs::read_to_string(&scenario).unwrap(), toml, "the scenario is untouched");
}

#[test]
fn a_report_over_the_rendezvous_token_file_is_refused_before_any_connect() {
    let dir = TempDir::new("outputs-token");
    let witness = Witness::new();
    let scenario = dir.file("s.toml", &scenario_toward(&witness.addr()));
    let secret = "a token of more than sixteen bytes";
    let token = dir.file("token", secret);
    let args = ["--shard", "0/2", "--rendezvous", "127.0.0.1:1", "--rendezvous-token-file", "token", "--json"];
    let out = run_in(&dir, &scenario, &[&args[..], &[token.to_str().unwrap()]].concat());
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is the rendezvous token file"), "{stderr}");
    witness.assert_no_connection();
    assert_eq!(fs::read_to_string(&token).unwrap(), secret, "the token is untouched");
}

#[test]
fn dash_puts_the_json_on_stdout_and_the_text_on_stderr() {
    let dir = TempDir::new("outputs-dash");
    let scenario = dir.file("s.toml", SCENARIO);
    let out = run_in(&dir, &scenario, &["--json", "-"]);
    assert_exit(&out, 0);
    assert_report(&String::from_utf8_lossy(&out.stdout), "stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PASSED: 1 phases"), "the text summary is on stderr: {stderr}");
    assert!(!dir.path("-").exists(), "no file named -");
}

/// A pipe whose read end is already closed, as standard output: every write gets EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Run `sockcap ARGS...` in `dir` with a closed standard output; returns exit code and stderr.
fn with_closed_stdout(dir: &TempDir, args: &[&str]) -> (Option<i32>, String) {
    let mut child = sockcap()
        .current_dir(&dir.0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sockcap starts");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = crate::support::wait_with_timeout(&mut child, Duration::from_secs(60));
    let stderr = reader.join().unwrap();
    assert!(!stderr.contains("panicked"), "no panic on a closed stdout: {stderr}");
    assert_ne!(status.code(), Some(101), "no panic exit: {stderr}");
    (status.code(), stderr)
}

#[test]
fn a_closed_stdout_neither_panics_nor_loses_the_report() {
    let dir = TempDir::new("outputs-epipe");
    let scenario = dir.file("s.toml", SCENARIO);
    let (code, stderr) = with_closed_stdout(&dir, &["run", scenario.to_str().unwrap(), "--quiet", "--json", "r.json"]);
    assert_eq!(code, Some(0), "the run's verdict: {stderr}");
    assert_report(&fs::read_to_string(dir.path("r.json")).expect("r.json was written"), "r.json");
}

#[test]
fn probe_watch_ends_quietly_on_a_closed_stdout() {
    let dir = TempDir::new("outputs-probe-epipe");
    let (code, stderr) = with_closed_stdout(&dir, &["probe", "--watch", "100ms"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn another_stdout_error_exits_3_and_names_it() {
    let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full opens for writing");
    let out = sockcap()
        .args(["probe", "--port", "1"])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("sockcap probe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_exit(&out, 3);
    assert!(stderr.contains("writing to standard output") && stderr.contains("No space left"), "{stderr}");
}
