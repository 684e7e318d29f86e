//! Deadlines a target cannot defeat: a close ends at its timeout while the target sends
//! without pause (counted `close_timeout`, never `no_outcome`), and a second SIGINT ends
//! a run at once (exit 130, no worker left behind).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{
    assert_exit, assert_gone, children_running, free_port, output_within, phase, report, sockcap, start_run,
    wait_with_timeout, Progress, TempDir,
};

/// A target that accepts connections and writes to each without pause, never reading.
/// Each connection's stream ends when the client resets it, at `Drop`, or after `bound`.
struct Streamer {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Streamer {
    fn start(bound: Duration) -> Streamer {
        // Tests run in parallel and may be handed the same quiet port: take the next.
        let listener = (0..20)
            .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
            .expect("the streaming target binds a quiet port");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + bound;
        let stopped = stop.clone();
        let acceptor = std::thread::spawn(move || {
            for peer in listener.incoming() {
                if stopped.load(Ordering::SeqCst) || Instant::now() > until {
                    return;
                }
                let Ok(peer) = peer else { continue };
                let stopped = stopped.clone();
                std::thread::spawn(move || stream_to(peer, &stopped, until));
            }
        });
        Streamer { port, stop, acceptor: Some(acceptor) }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Write 64 KiB blocks until the peer is gone, the stop, or `until`.
fn stream_to(mut peer: TcpStream, stop: &AtomicBool, until: Instant) {
    let block = [b'x'; 64 << 10];
    // A blocked write wakes now and then to look at the clock and the stop.
    let _ = peer.set_write_timeout(Some(Duration::from_millis(100)));
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        match peer.write(&block) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn scenario(target: &str, close_timeout: &str) -> String {
    format!(
        "name = \"a target that streams\"\ntarget = \"{target}\"\nprotocol = \"tcp\"\n\n\
         [[phase]]\nname = \"connect\"\nconnect = {{ count = 20, rate = 1000 }}\n\n\
         [[phase]]\nname = \"close\"\nclose = {{ how = \"fin\", rate = 1000, timeout = \"{close_timeout}\" }}\n\
         expect = {{ \"errors.close_timeout\" = \"== 20\" }}\n"
    )
}

/// Measured before the fix: the same close took as long as the target streamed (59.8 s
/// against a 60 s stream; here it would take the streamer's 40 s bound), and a longer
/// stream spun a core and never ended. Now each close gives up at 1 s with an RST.
#[test]
fn a_fin_close_ends_at_its_timeout_while_the_target_streams() {
    let target = Streamer::start(Duration::from_secs(40));
    let dir = TempDir::new("deadline-fin");
    let file = dir.file("s.toml", &scenario(&target.addr(), "1s"));
    let json = dir.path("r.json");
    let began = Instant::now();
    let out = output_within(
        sockcap().args(["run", file.to_str().unwrap(), "--json", json.to_str().unwrap(), "--quiet", "--workers", "1"]),
        Duration::from_secs(60),
    );
    let took = began.elapsed();
    assert_exit(&out, 0);
    let report = report(&json);
    let close = phase(&report, "close");
    assert_eq!(close["errors"]["close_timeout"], 20, "{close}");
    assert_eq!(close["errors"]["no_outcome"], 0, "{close}");
    let close_ms = close["duration_ms"].as_u64().unwrap();
    assert!((1_000..3_000).contains(&close_ms), "the close phase took {close_ms} ms with a 1 s timeout");
    assert!(took < Duration::from_secs(15), "the run took {took:?}");
}

/// The first SIGINT starts the clean stop, which waits for the closes (here up to the
/// worker's 10 s drain: each close waits 30 s for a FIN that never comes); the second
/// ends the process at once with exit 130, and its worker processes die with it. Before
/// the fix, the in-process run's closes spun both runtime threads and two SIGINTs did
/// nothing (the test's 5 s wait ran out).
#[test]
fn a_second_sigint_quits_at_once() {
    for workers in [1, 2] {
        let target = Streamer::start(Duration::from_secs(40));
        let dir = TempDir::new(&format!("deadline-sigint-{workers}"));
        let (mut run, _json) = start_run(&dir, &scenario(&target.addr(), "30s"), &["--workers", &workers.to_string()]);
        let pid = run.id();
        Progress::of(&mut run).wait_for_phase("close", Duration::from_secs(20));
        let children = children_running(pid, "worker");
        assert_eq!(children.len(), if workers == 1 { 0 } else { workers }, "{children:?}");
        std::thread::sleep(Duration::from_millis(300));
        let sigint = || {
            // SAFETY: kill(2) with this test's own child's pid.
            assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
        };
        sigint();
        std::thread::sleep(Duration::from_millis(300));
        let second = Instant::now();
        sigint();
        let status = wait_with_timeout(&mut run, Duration::from_secs(5));
        let took = second.elapsed();
        assert_eq!(status.code(), Some(130), "with {workers} worker(s)");
        assert!(
            took < Duration::from_secs(2),
            "with {workers} worker(s), the run ended {took:?} after the second SIGINT"
        );
        assert_gone(&children, Duration::from_secs(5));
    }
}

/// The second SIGINT quits even after the engine has returned, while the run stops its
/// embedded target (here stopped with SIGSTOP, so the run would wait 5 s for it to
/// answer SIGTERM before killing it). Before the fix, the engine's signal watcher was
/// gone by then: the second SIGINT did nothing and the run ended 5 s later.
#[test]
fn a_second_sigint_quits_while_the_run_stops_its_target() {
    let dir = TempDir::new("deadline-sigint-target");
    let toml = "name = \"a target that will not stop\"\ntarget = \"embedded\"\nprotocol = \"tcp\"\n\n\
                [[phase]]\nname = \"connect\"\nconnect = { count = 20, rate = 1000 }\n\n\
                [[phase]]\nname = \"hold\"\nhold = \"30s\"\n";
    let (mut run, _json) = start_run(&dir, toml, &["--workers", "1"]);
    let pid = run.id();
    Progress::of(&mut run).wait_for_phase("hold", Duration::from_secs(20));
    let serve = children_running(pid, "serve");
    assert_eq!(serve.len(), 1, "the embedded target: {serve:?}");
    let signal = |pid: u32, sig: libc::c_int| {
        // SAFETY: kill(2) to this test's own run and the target that run started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
    };
    signal(serve[0], libc::SIGSTOP);
    signal(pid, libc::SIGINT);
    // The run has reported and is stopping its target: SIGTERM waits in the stopped target.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sigterm_pending(serve[0]) {
        assert!(Instant::now() < deadline, "the run did not stop its target within 15 s of the first SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Instant::now();
    signal(pid, libc::SIGINT);
    let status = wait_with_timeout(&mut run, Duration::from_secs(10));
    let took = second.elapsed();
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(2), "the run ended {took:?} after the second SIGINT");
    assert_gone(&serve, Duration::from_secs(5));
}

/// Whether SIGTERM is pending for process `pid` (its ShdPnd mask in /proc).
fn sigterm_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| l.strip_prefix("ShdPnd:"))
        .any(|mask| u64::from_str_radix(mask.trim(), 16).is_ok_and(|bits| bits & (1 << (libc::SIGTERM - 1)) != 0))
}
