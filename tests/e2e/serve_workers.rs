//! `sockcap serve --workers N`: accepted sockets spread over N processes sharing the
//! port (`ss -p` is the witness); SIGTERM to the parent stops every worker and exits
//! 0; SIGKILL to the parent takes the workers with it (PR_SET_PDEATHSIG); a run's
//! embedded target uses the scenario's `workers`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_exit, free_port, run, run_scenario, sockcap};

const CLIENTS: usize = 300;
const PATIENCE: Duration = Duration::from_secs(15);

/// `sockcap serve --workers N` started by the test; SIGKILLed on drop (its workers
/// follow through PR_SET_PDEATHSIG).
struct Served {
    addr: SocketAddr,
    child: Child,
}

impl Served {
    fn start(workers: u32) -> Served {
        let workers = workers.to_string();
        let mut child = sockcap()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--workers",
                &workers,
                "--protocol",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sockcap serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
        let Some(addr) = sockcap::embedded::parse_ready_line(&line) else {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("no ready line: {line:?}\n--- stderr\n{stderr}");
        };
        Served { addr, child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) takes plain integers; the child is ours and not yet reaped.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the parent to exit; its status and stderr.
    fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "sockcap serve did not exit within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).expect("stderr");
        (status, stderr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids in the `users:((...))` column of `ss -p` lines.
fn pids_of(line: &str) -> Vec<u32> {
    line.split("pid=")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap())
        .collect()
}

/// `ss -Htnp` with `args`: one entry per socket line, the pids holding it.
fn ss_pids(args: &[&str]) -> Vec<Vec<u32>> {
    let out = Command::new("ss").arg("-Htnp").args(args).output().expect("ss runs");
    assert!(out.status.success(), "ss failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(pids_of).collect()
}

/// The pids of the processes listening on `port`: every listener is held by one.
fn listener_pids(port: u16) -> BTreeSet<u32> {
    let listeners = ss_pids(&["-l", "sport", "=", &format!(":{port}")]);
    listeners
        .iter()
        .map(|pids| {
            assert_eq!(pids.len(), 1, "a listener held by one process: {listeners:?}");
            pids[0]
        })
        .collect()
}

/// Accepted sockets on `port` per holding process, once all `n` are accepted.
fn accepted_per_process(port: u16, n: usize) -> BTreeMap<u32, usize> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sockets = ss_pids(&["state", "established", "sport", "=", &format!(":{port}")]);
        // A socket still in an accept queue belongs to no process yet.
        if sockets.len() == n && sockets.iter().all(|pids| pids.len() == 1) {
            let mut per_process = BTreeMap::new();
            for pids in sockets {
                *per_process.entry(pids[0]).or_insert(0) += 1;
            }
            return per_process;
        }
        assert!(Instant::now() < deadline, "{n} accepted sockets on :{port} not seen: {sockets:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // pid (comm) state ppid ...
    let (_, tail) = stat.rsplit_once(") ").unwrap();
    tail.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// True once `pid` has exited: gone from /proc, or a zombie left to a reaper that
/// does not reap (PID 1 in some containers).
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, tail)| tail.starts_with('Z')),
    }
}

fn wait_until_exited(pid: u32) {
    let deadline = Instant::now() + PATIENCE;
    while !has_exited(pid) {
        assert!(Instant::now() < deadline, "worker pid {pid} still runs {PATIENCE:?} after its parent");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parent and its `workers - 1` workers, each holding a listener on the port.
fn workers_of(served: &Served, workers: usize) -> Vec<u32> {
    let listeners = listener_pids(served.addr.port());
    assert_eq!(listeners.len(), workers, "{workers} processes listen: {listeners:?}");
    assert!(listeners.contains(&served.pid()), "the parent listens too: {listeners:?}");
    let children: Vec<u32> = listeners.into_iter().filter(|&pid| pid != served.pid()).collect();
    for &child in &children {
        assert_eq!(parent_of(child), served.pid(), "worker {child} is the parent's child");
    }
    children
}

#[test]
fn accepted_sockets_spread_over_the_workers_and_sigterm_stops_them_all() {
    let mut served = Served::start(3);
    let children = workers_of(&served, 3);

    let clients: Vec<TcpStream> =
        (0..CLIENTS).map(|i| TcpStream::connect(served.addr).unwrap_or_else(|e| panic!("connect {i}: {e}"))).collect();
    let per_process = accepted_per_process(served.addr.port(), CLIENTS);
    let holders: BTreeSet<u32> = per_process.keys().copied().collect();
    let expected: BTreeSet<u32> = children.iter().copied().chain([served.pid()]).collect();
    assert_eq!(holders, expected, "every process holds some accepted sockets: {per_process:?}");
    assert_eq!(per_process.values().sum::<usize>(), CLIENTS);

    served.signal(libc::SIGTERM);
    let (status, stderr) = served.wait();
    assert_eq!(status.code(), Some(0), "exit status\n--- stderr\n{stderr}");
    for &child in &children {
        assert!(!std::path::Path::new(&format!("/proc/{child}")).exists(), "worker {child} reaped by its parent");
    }
    let summary =
        format!("sockcap serve: {CLIENTS} accepted, 0 MQTT connects, 0 accept errors (summed over 3 processes)");
    assert!(stderr.contains(&summary), "one summing line\n--- stderr\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "nothing else to say\n--- stderr\n{stderr}");
    drop(clients);
}

#[test]
fn workers_die_with_a_killed_parent() {
    let mut served = Served::start(3);
    let children = workers_of(&served, 3);
    served.signal(libc::SIGKILL);
    let (status, _) = served.wait();
    assert_eq!(status.code(), None, "killed by a signal");
    for child in children {
        wait_until_exited(child);
    }
}

#[test]
fn zero_workers_is_refused() {
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--workers") && stderr.contains("at least one process"), "{stderr}");
}

/// A run's embedded target with `workers = 3` serves from three processes: each
/// adds its figures to the target's summary line, which reaches the run's stderr.
#[test]
fn a_run_starts_the_embedded_target_with_its_workers() {
    let (out, _report) = run_scenario(
        "serve-workers",
        &format!(
            r#"
name = "embedded target in three processes"
target = "embedded"
protocol = "mqtt"
[embedded]
workers = 3
[[phase]]
name = "ramp"
connect = {{ count = {CLIENTS}, rate = 3000 }}
expect = {{ established = "== {CLIENTS}", "server.established" = "== {CLIENTS}" }}
"#
        ),
        &[],
    );
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = format!(
        "sockcap serve: {CLIENTS} accepted, {CLIENTS} MQTT connects, 0 accept errors (summed over 3 processes)"
    );
    assert!(stderr.contains(&summary), "{stderr}");
    assert!(!stderr.contains("stopping the embedded target"), "{stderr}");
}
