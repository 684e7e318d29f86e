//! A pass needs an observation. sockcap runs with its census made to fail for real:
//! sock_diag netlink refused (a seccomp filter answers EPERM to socket(AF_NETLINK, ..)),
//! so the prober falls back to /proc/net/tcp, which is made unreadable along with
//! /proc/net/netstat (in a mount namespace of its own, /proc is a tmpfs whose entries
//! lead to a real procfs, except those three, which are directories). Expectations that
//! hold on the real figures (`established == 0` after every connection is closed) then
//! fail, with exit 1 and the reason, instead of passing on zeros nobody counted. The
//! same scenario run normally passes: the failure is the missing observation's.
//!
//! A merge of shards where one shard's report cannot be read whole (its histogram is
//! corrupt) leaves the merged phase's counts unobserved: the default `errors == 0` fails.
//!
//! The census tests need root (network and mount namespaces, mounts over /proc): they
//! fail, saying so, without it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_exit, assert_matches_schema, output_within, phase, report, run, run_scenario, TempDir};

/// The mount namespace's /proc: a tmpfs of links to a real procfs (at /proc/.real),
/// with /proc/net/{tcp,tcp6,netstat} directories, which fail to read (EISDIR).
const BLIND_PROC: &str = r#"set -e
real=$(mktemp -d)
mount -t proc proc "$real"
mount -t tmpfs sockcap-blind-proc /proc
mkdir /proc/.real
mount --move "$real" /proc/.real
rmdir "$real"
for e in $(ls -A /proc/.real); do
  case "$e" in net) ;; *[!0-9]*) ln -s ".real/$e" "/proc/$e" ;; esac
done
mkdir /proc/net
for f in $(ls -A /proc/.real/self/net); do ln -s "../.real/self/net/$f" "/proc/net/$f"; done
for f in tcp tcp6 netstat; do rm -f "/proc/net/$f"; mkdir "/proc/net/$f"; done
exec "$@"
"#;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root (network and mount namespaces, mounts over /proc): run it as root");
}

/// The seccomp architecture this test's filter checks.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// In the child, before exec: every socket(AF_NETLINK, ..) of it and its descendants
/// fails with EPERM, as in a container that refuses netlink.
fn refuse_netlink() -> std::io::Result<()> {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half, little-endian).
    let filter = [
        load(4),
        jeq(AUDIT_ARCH, 0, 5),
        load(0),
        jeq(libc::SYS_socket as u32, 0, 3),
        load(16),
        jeq(libc::AF_NETLINK as u32, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl with these arguments only sets flags and copies the filter in.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Five connections to the embedded target, then all closed with RST: on the real
/// figures, no socket is left on either side, and the kernel saw no accept-queue
/// overflow. Run with `--netns`: the kernel's counters are the run's namespace's alone,
/// whatever other tests do meanwhile.
const SCENARIO: &str = r#"name = "unobserved"
target = "embedded"
protocol = "tcp"
[[phase]]
name = "ramp"
connect = { count = 5, rate = 100 }
expect = { connected = "== 5" }
[[phase]]
name = "close"
close = { how = "rst", rate = 100 }
expect = { established = "== 0", "server.time_wait" = "== 0", "kernel.ListenOverflows" = "== 0" }
"#;

/// A listener that accepts and keeps the first `n` connections (the peers close them
/// with RST), on a thread left to end with the test process.
fn listener(n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(n).flatten() {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    port
}

/// The expectation `expr` of phase `name`.
fn expectation<'a>(report: &'a Value, name: &str, expr: &str) -> &'a Value {
    let found = phase(report, name)["expectations"].as_array().unwrap().iter().find(|e| e["expr"] == expr);
    found.unwrap_or_else(|| panic!("no `{expr}` in phase {name}: {report}"))
}

#[test]
fn the_same_scenario_observed_passes() {
    require_root();
    let (out, report) = run_scenario("observed", SCENARIO, &["--netns"]);
    assert_exit(&out, 0);
    for expr in ["established == 0", "server.time_wait == 0", "kernel.ListenOverflows == 0"] {
        let e = expectation(&report, "close", expr);
        assert_eq!((&e["actual"], &e["passed"]), (&Value::from(0.0), &Value::Bool(true)), "{e}");
    }
    assert_eq!(phase(&report, "close")["unobserved"], serde_json::json!({}));
}

#[test]
fn a_census_that_fails_passes_nothing() {
    require_root();
    let dir = TempDir::new("unobserved");
    let file = dir.file("scenario.toml", SCENARIO);
    let json = dir.path("report.json");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", BLIND_PROC, "sh"])
        .arg(env!("CARGO_BIN_EXE_sockcap"))
        .args(["run", file.to_str().unwrap(), "--netns", "--json", json.to_str().unwrap()]);
    // SAFETY: refuse_netlink only calls prctl, which is async-signal-safe.
    unsafe { command.pre_exec(refuse_netlink) };
    let out: Output = output_within(&mut command, Duration::from_secs(60));
    assert_exit(&out, 1);
    let report = report(&json);
    assert_matches_schema(&report);
    assert_eq!(report["probe_backend"], "proc_net", "netlink was refused: {}", report["probe_warning"]);

    // The connects were counted by the workers, not by a census: they hold.
    let ramp = expectation(&report, "ramp", "connected == 5");
    assert_eq!((&ramp["actual"], &ramp["passed"]), (&Value::from(5.0), &Value::Bool(true)), "{ramp}");
    let close = phase(&report, "close");
    for p in report["phases"].as_array().unwrap() {
        assert_eq!(p["samples"], serde_json::json!([]), "a census sample that failed is left out, not zeros: {p}");
    }
    for (expr, figure, says) in [
        ("established == 0", "census.client", "/proc/net/tcp"),
        ("server.time_wait == 0", "census.server", "/proc/net/tcp"),
        ("kernel.ListenOverflows == 0", "kernel", "/proc/net/netstat"),
    ] {
        let e = expectation(&report, "close", expr);
        assert_eq!((&e["actual"], &e["passed"]), (&Value::Null, &Value::Bool(false)), "{e}");
        let reason = e["reason"].as_str().unwrap_or_else(|| panic!("no reason: {e}"));
        assert!(reason.contains(says), "`{expr}`: {reason}");
        assert_eq!(close["unobserved"][figure], reason, "{close}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL established == 0: unobserved: the client-side census failed: reading /proc/net/tcp"));
    assert!(stdout.contains("FAIL kernel.ListenOverflows == 0: unobserved: "), "{stdout}");
    assert!(stdout.contains("FAILED: 3 of "), "{stdout}");
}

/// Two shards run one after the other (no common start is needed for this); shard 1's
/// report then has its connect histogram corrupted, as a damaged file would.
#[test]
fn a_shard_report_that_cannot_be_read_whole_passes_nothing_in_the_merge() {
    let port = listener(4);
    let dir = TempDir::new("unobserved-merge");
    let toml = format!(
        "name = \"merge unobserved\"\ntarget = \"127.0.0.1:{port}\"\nprotocol = \"tcp\"\n\
         [[phase]]\nname = \"ramp\"\nconnect = {{ count = 4, rate = 100 }}\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"rst\", rate = 100 }}\n"
    );
    let file = dir.file("scenario.toml", &toml);
    let shards: Vec<_> = (0..2).map(|i| dir.path(&format!("shard-{i}.json"))).collect();
    for (i, json) in shards.iter().enumerate() {
        let shard = format!("{i}/2");
        let out = run(&["run", file.to_str().unwrap(), "--shard", &shard, "--quiet", "--json", json.to_str().unwrap()]);
        assert_exit(&out, 0);
    }
    let merged = dir.path("merged.json");
    let merge = |files: &[&std::path::Path]| {
        let mut args = vec!["merge", "--expect-shards", "2", "--json", merged.to_str().unwrap()];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        run(&args)
    };
    assert_exit(&merge(&[&shards[0], &shards[1]]), 0);
    let whole = report(&merged);
    assert_eq!(phase(&whole, "ramp")["unobserved"], serde_json::json!({}));

    let mut damaged = report(&shards[1]);
    damaged["phases"][0]["latency_us"]["connect"]["hdr"] = Value::from("HISTFAAAA!");
    let damaged_file = dir.file("shard-1-damaged.json", &damaged.to_string());
    let out = merge(&[&shards[0], &damaged_file]);
    assert_exit(&out, 1);
    let merged = report(&merged);
    assert_matches_schema(&merged);
    let ramp = phase(&merged, "ramp");
    assert_eq!(ramp["succeeded"], 4, "the figures keep their numbers for the schema: {ramp}");
    let e = expectation(&merged, "ramp", "errors == 0");
    assert_eq!((&e["actual"], &e["passed"]), (&Value::Null, &Value::Bool(false)), "{e}");
    let reason = e["reason"].as_str().unwrap_or_else(|| panic!("no reason: {e}"));
    assert!(reason.contains("connect histogram cannot be decoded"), "{reason}");
    assert_eq!(ramp["unobserved"]["operations"], reason);
    assert!(ramp["unobserved"]["latency.connect"].is_string(), "{ramp}");
    assert_eq!(phase(&merged, "close")["unobserved"], serde_json::json!({}), "the close phase read whole");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL errors == 0 (default): unobserved: 1 of the 2 shards' connect histogram"),
        "{stdout}"
    );
}
