//! Faults on purpose: the events a phase runs at its start ([`Event`]: `exec`, `fault`,
//! `netem`), in the coordinator only (one run of each per host), concurrently with the
//! phase's action. Each has a deadline and becomes an [`EventReport`]; the phase ends
//! when its action and its events are done.
//!
//! The embedded target belongs to the CLI: a restart is asked for through a
//! [`TargetRestarts`] channel in the [`RunContext`](super::RunContext), which the CLI
//! serves from its main thread (the one that may start children, see
//! [`crate::child_process::prepare`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::plan::{Event, ExecPlan, Netem};
use crate::report::EventReport;

/// A request to restart the embedded target: kill its processes at once, wait
/// `pause`, start them again on the same port. The answer says what was done, or why
/// it could not be.
#[derive(Debug)]
pub struct RestartRequest {
    pub pause: Duration,
    pub done: oneshot::Sender<Result<String, String>>,
}

/// Where the engine asks for target restarts (`fault = { restart_target }`).
pub type TargetRestarts = mpsc::Sender<RestartRequest>;

/// How long `tc` may take.
const TC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restart may take beyond its pause (kill, reap, start, ready).
const RESTART_SLACK: Duration = Duration::from_secs(60);
/// How long a command's output is still read once it exited (a child it left behind
/// may hold the pipe open for ever).
const OUTPUT_DRAIN: Duration = Duration::from_millis(300);
/// The output kept of a command: its last lines, and bytes.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 4096;

/// The events of one phase, running.
pub(super) struct PhaseEvents {
    handle: Option<JoinHandle<Vec<EventReport>>>,
    reports: Vec<EventReport>,
}

impl PhaseEvents {
    /// Start `events` at `at` (the phase's start), concurrently; times are reported
    /// from `run_start`. `stop` ends them early (a command is killed).
    pub(super) fn start(
        events: &[Event],
        at: Instant,
        run_start: Instant,
        restarts: Option<TargetRestarts>,
        stop: CancellationToken,
    ) -> PhaseEvents {
        if events.is_empty() {
            return PhaseEvents { handle: None, reports: Vec::new() };
        }
        let events = events.to_vec();
        let handle = tokio::spawn(async move {
            sleep_until(at).await;
            let mut set = tokio::task::JoinSet::new();
            let count = events.len();
            for (i, event) in events.into_iter().enumerate() {
                let (restarts, stop) = (restarts.clone(), stop.clone());
                set.spawn(async move { (i, run(&event, run_start, restarts, stop).await) });
            }
            let error = Some("the event's task ended abnormally".into());
            let mut reports = vec![EventReport { kind: "event".into(), error, ..EventReport::default() }; count];
            while let Some(done) = set.join_next().await {
                if let Ok((i, report)) = done {
                    reports[i] = report;
                }
            }
            reports
        });
        PhaseEvents { handle: Some(handle), reports: Vec::new() }
    }

    pub(super) fn done(&self) -> bool {
        self.handle.is_none()
    }

    /// Wait for every event to end (cancel safe).
    pub(super) async fn wait(&mut self) {
        let Some(handle) = &mut self.handle else { return };
        let joined = handle.await;
        self.handle = None;
        self.reports = joined.unwrap_or_else(|e| {
            let error = Some(format!("the phase's events ended abnormally: {e}"));
            vec![EventReport { kind: "event".into(), error, ..EventReport::default() }]
        });
    }

    /// The reports, once every event ended.
    pub(super) async fn finish(mut self) -> Vec<EventReport> {
        self.wait().await;
        self.reports
    }
}

/// Run one event to its end or its deadline.
async fn run(
    event: &Event,
    run_start: Instant,
    restarts: Option<TargetRestarts>,
    stop: CancellationToken,
) -> EventReport {
    let began = Instant::now();
    let mut report = EventReport {
        kind: event.kind().to_string(),
        what: event.describe(),
        started_ms: began.saturating_duration_since(run_start).as_millis() as u64,
        ..EventReport::default()
    };
    let outcome = match event {
        Event::Exec(exec) => command(exec, &stop).await,
        Event::Netem(netem) => {
            let (what, outcome) = emulate(netem, &stop).await;
            report.what = what;
            outcome
        }
        Event::RestartTarget(pause) => restart(*pause, restarts).await,
    };
    report.duration_ms = began.elapsed().as_millis() as u64;
    report.exit_status = outcome.exit_status;
    report.output_tail = outcome.output;
    report.ok = outcome.error.is_none();
    report.error = outcome.error;
    report
}

/// Put `netem` on the loopback of the namespace this process is in (`[netns] netem`,
/// for the whole run); returns the command that did, or why none could, its output included.
pub async fn set_netem(netem: &Netem) -> Result<String, String> {
    let (what, out) = emulate(netem, &CancellationToken::new()).await;
    match out.error {
        None => Ok(what),
        Some(e) if out.output.is_empty() => Err(format!("`{what}`: {e}")),
        Some(e) => Err(format!("`{what}`: {e}: {}", out.output)),
    }
}

/// `tc qdisc replace dev lo root netem ...`; on a kernel without the netem qdisc, loss
/// alone is emulated with nftables instead (a rule dropping that share of the packets
/// that arrive on `lo`). Returns the command run, and how it went.
async fn emulate(netem: &Netem, stop: &CancellationToken) -> (String, Outcome) {
    let tc = ExecPlan { command: [vec!["tc".to_string()], netem.tc_args()].concat(), timeout: TC_TIMEOUT };
    let what = tc.command.join(" ");
    let mut out = command(&tc, stop).await;
    if !out.output.contains("qdisc kind is unknown") {
        return (what, out);
    }
    if !netem.delay.is_zero() {
        out.error = Some(
            "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): delay and jitter cannot be emulated here; \
             run on a kernel with it (loss alone falls back to nftables)"
                .into(),
        );
        return (what, out);
    }
    let nft = ExecPlan { command: [vec!["nft".to_string()], netem.nft_args()].concat(), timeout: TC_TIMEOUT };
    let what = format!("nft {} (this kernel has no netem qdisc)", netem.nft_args().join(" "));
    (what, command(&nft, stop).await)
}

/// How an event ended.
#[derive(Debug, Default)]
struct Outcome {
    exit_status: Option<i32>,
    output: String,
    error: Option<String>,
}

async fn restart(pause: Duration, restarts: Option<TargetRestarts>) -> Outcome {
    let Some(restarts) = restarts else {
        return Outcome { error: Some("this run has no embedded target to restart".into()), ..Outcome::default() };
    };
    let (done, answer) = oneshot::channel();
    let asked = async {
        restarts.send(RestartRequest { pause, done }).await.map_err(|_| "the run stopped serving restarts")?;
        answer.await.map_err(|_| "the restart was dropped unanswered".to_string())?
    };
    let deadline = pause + RESTART_SLACK;
    match tokio::time::timeout(deadline, asked).await {
        Ok(Ok(what)) => Outcome { output: what, ..Outcome::default() },
        Ok(Err(error)) => Outcome { error: Some(error), ..Outcome::default() },
        Err(_) => Outcome { error: Some(format!("the restart took longer than {deadline:?}")), ..Outcome::default() },
    }
}

/// Run `exec.command` (no shell) with its stdout and stderr into one pipe; kill it
/// and its process group when its timeout passes or `stop` fires.
async fn command(exec: &ExecPlan, stop: &CancellationToken) -> Outcome {
    let failed = |error: String| Outcome { error: Some(error), ..Outcome::default() };
    let (sender, mut reader) = match tokio::net::unix::pipe::pipe() {
        Ok(pair) => pair,
        Err(e) => return failed(format!("making a pipe for its output: {e}")),
    };
    let spawned = {
        let mut cmd = Command::new(&exec.command[0]);
        cmd.args(&exec.command[1..]);
        crate::child_process::prepare(&mut cmd);
        let out = sender.into_blocking_fd().and_then(|fd| Ok((fd.try_clone()?, fd)));
        match out {
            Ok((out, err)) => cmd.stdout(out).stderr(err).spawn(),
            Err(e) => Err(e),
        }
        // `cmd` drops here with our copies of the pipe's write end.
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ["tc", "nft"].contains(&exec.command[0].as_str()) => {
            let package = if exec.command[0] == "tc" { "iproute2" } else { "nftables" };
            return failed(format!(
                "`{}` was not found ({e}): install {package} (apt-get install {package})",
                exec.command[0]
            ));
        }
        Err(e) => return failed(format!("could not start `{}`: {e}", exec.command[0])),
    };
    let pid = child.id();
    let mut tail = Tail::default();
    let mut buf = [0u8; 4096];
    let mut open = true;
    let deadline = tokio::time::sleep(exec.timeout);
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Ok(status),
            read = reader.read(&mut buf), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => tail.push(&buf[..n]),
            },
            () = &mut deadline => break Err(format!("did not end within its timeout of {:?}; killed", exec.timeout)),
            () = stop.cancelled() => break Err("the run was stopped; killed".to_string()),
        }
    };
    if ended.is_err() {
        kill_group(pid);
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    // What it wrote until it ended, without waiting for a child it left behind.
    let drain = tokio::time::sleep(OUTPUT_DRAIN);
    tokio::pin!(drain);
    while open {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => tail.push(&buf[..n]),
            },
            () = &mut drain => break,
        }
    }
    let output = tail.text();
    match ended {
        Err(why) => Outcome { output, error: Some(why), ..Outcome::default() },
        Ok(Err(e)) => Outcome { output, error: Some(format!("waiting for it: {e}")), ..Outcome::default() },
        Ok(Ok(status)) if status.success() => Outcome { exit_status: status.code(), output, error: None },
        Ok(Ok(status)) => {
            Outcome { exit_status: status.code(), output, error: Some(format!("it exited with {status}")) }
        }
    }
}

/// SIGKILL to the process group a command leads ([`crate::child_process::prepare`]
/// gives it one of its own), by its id.
fn kill_group(pid: Option<u32>) {
    let Some(pgid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else { return };
    // SAFETY: killpg(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// The last [`TAIL_BYTES`] of a command's output.
#[derive(Debug, Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(TAIL_BYTES);
        self.0.drain(..excess);
    }

    /// The last [`TAIL_LINES`] lines, as text.
    fn text(&self) -> String {
        let (a, b) = self.0.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(command: &[&str], timeout: Duration) -> ExecPlan {
        ExecPlan { command: command.iter().map(|s| s.to_string()).collect(), timeout }
    }

    #[tokio::test]
    async fn a_command_reports_its_status_and_the_tail_of_its_output() {
        let script = "for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3";
        let out = command(&exec(&["sh", "-c", script], Duration::from_secs(10)), &CancellationToken::new()).await;
        assert_eq!(out.exit_status, Some(3));
        assert!(out.error.as_deref().is_some_and(|e| e.contains("exit status: 3")), "{out:?}");
        assert_eq!(out.output.lines().count(), TAIL_LINES, "{out:?}");
        assert!(out.output.starts_with("line 12\n") && out.output.ends_with("line 30\noops"), "{out:?}");
        let ok = command(&exec(&["true"], Duration::from_secs(10)), &CancellationToken::new()).await;
        assert_eq!((ok.exit_status, ok.error), (Some(0), None));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_group() {
        let began = Instant::now();
        let out =
            command(&exec(&["sh", "-c", "sleep 30; true"], Duration::from_millis(300)), &CancellationToken::new())
                .await;
        assert!(began.elapsed() < Duration::from_secs(5), "{:?}", began.elapsed());
        assert!(out.error.as_deref().is_some_and(|e| e.contains("timeout")), "{out:?}");
        assert_eq!(out.exit_status, None);
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_says_so() {
        let out = command(&exec(&["/nonexistent/prog"], Duration::from_secs(1)), &CancellationToken::new()).await;
        assert!(out.error.as_deref().is_some_and(|e| e.contains("could not start `/nonexistent/prog`")), "{out:?}");
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; TAIL_BYTES]);
        tail.push(b"\nend");
        assert_eq!(tail.0.len(), TAIL_BYTES);
        assert!(tail.text().ends_with("a\nend"));
    }
}
