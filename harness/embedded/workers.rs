//! The worker processes of `sockcap serve --workers N`: N − 1 more `sockcap serve`
//! processes on the address the parent bound, so that the target holds more
//! sockets than one process's descriptor limit allows.
//!
//! Each worker runs `sockcap serve --listen ADDR --workers 1` with the parent's
//! behaviour flags and binds with SO_REUSEPORT next to the parent's listener. Its
//! stdout is a pipe the parent reads its messages from, as JSON lines: ready,
//! then at exit its summary, which the parent keeps to add up; its stderr is
//! relayed to the parent's, prefixed with its pid. A worker that dies while serving is reported to the
//! caller as it happens; at shutdown every worker gets SIGTERM, then SIGKILL after
//! [`STOP_GRACE`].

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::child::{exit_status, send_signal, serve_args, serve_command, DRAIN};
use super::messages::ChildMessages;
use super::options::{ServeOptions, ServeSummary};
use crate::child_process::prepare;
use crate::descriptors;
use crate::descriptors::MAX_WORKERS;

/// How long the workers together may take to say they are ready: less
/// than a run waits for its target's, so the parent can still say which failed.
const READY_TIMEOUT: Duration = Duration::from_secs(8);

/// How long a worker may take to exit after SIGTERM before SIGKILL: less than a
/// run gives its target, so the parent can still reap them and exit cleanly.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The processes an embedded target needs (itself included) to hold
/// `connections` with each process under its own `nofile_limit`
/// ([`descriptors::workers_needed`]). SO_REUSEPORT shares connections out by a hash,
/// not exactly evenly, so once more than one process is needed the count also
/// covers an eighth more connections than asked. At most [`MAX_WORKERS`].
pub fn workers_for(connections: u64, nofile_limit: u64) -> u32 {
    let needed = match descriptors::workers_needed(connections, nofile_limit) {
        1 => 1,
        _ => descriptors::workers_needed(connections.saturating_add(connections / 8), nofile_limit),
    };
    u32::try_from(needed).unwrap_or(u32::MAX).min(MAX_WORKERS)
}

/// The workers of one `sockcap serve`, each listening.
#[derive(Debug, Default)]
pub(super) struct Workers {
    workers: Vec<Worker>,
}

/// One started worker.
#[derive(Debug)]
struct Worker {
    pid: u32,
    /// Killed when dropped.
    child: Child,
    /// Its stdout, kept open (a later write must not fail with EPIPE).
    messages: ChildMessages<ChildStdout>,
    /// Relays its stderr to ours.
    stderr: JoinHandle<()>,
}

/// How a worker's life ended, with what it said of its work.
#[derive(Debug)]
pub(super) struct WorkerEnd {
    pub pid: u32,
    pub ending: Ending,
    /// The figures of its summary message; `None` if it sent none (killed, crashed).
    pub summary: Option<ServeSummary>,
}

#[derive(Debug)]
pub(super) enum Ending {
    /// It exited on its own while the target was serving.
    Died(ExitStatus),
    /// It exited at shutdown (after SIGTERM, or just before it).
    Stopped(ExitStatus),
    /// It was still running [`STOP_GRACE`] after SIGTERM and was killed.
    Killed,
    /// Signalling or waiting for it failed; it was killed.
    Lost(String),
}

impl WorkerEnd {
    /// What the operator should hear about this ending: nothing for a clean stop.
    pub fn note(&self) -> Option<String> {
        let pid = self.pid;
        match &self.ending {
            Ending::Died(status) => {
                Some(format!("worker pid {pid} exited while serving ({status}); the other processes serve on"))
            }
            Ending::Stopped(status) if status.success() => None,
            Ending::Stopped(status) => Some(format!("worker pid {pid} exited with {status} at shutdown")),
            Ending::Killed => {
                Some(format!("worker pid {pid} did not exit within {STOP_GRACE:?} of SIGTERM and was killed"))
            }
            Ending::Lost(why) => Some(format!("lost track of worker pid {pid} ({why}); it was killed")),
        }
    }
}

impl Workers {
    /// Starts `count` workers serving `opts` on `addr` (the address this process
    /// bound, port resolved) and waits until every one has said it is ready.
    /// `None` if `shutdown` came first; on that and on every error the
    /// workers already started are killed and reaped. Call it from a thread that
    /// outlives the workers (see [`prepare`]).
    pub async fn start(
        addr: SocketAddr,
        opts: ServeOptions,
        tls: Option<&super::tls::ServeTls>,
        count: u32,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Workers>> {
        if count == 0 {
            return Ok(Some(Workers::default()));
        }
        let exe = std::env::current_exe().context("locating the sockcap executable")?;
        let mut args = serve_args(&ServeOptions { listen: addr, workers: 1, ..opts });
        args.push("--one-thread".into());
        // One certificate for every process of the target.
        if let Some(tls) = tls {
            args.extend(["--tls-cert".into(), tls.cert.display().to_string()]);
            args.extend(["--tls-key".into(), tls.key.display().to_string()]);
        }
        let commands = (0..count).map(|_| serve_command(&exe, &args));
        start_commands(commands.collect(), addr, READY_TIMEOUT, shutdown).await
    }

    /// Watches the workers until `shutdown`, then stops them (SIGTERM, then
    /// SIGKILL after [`STOP_GRACE`]) and returns how each ended. `on_end` hears
    /// of each ending as it happens, e.g. a worker that died while serving.
    pub async fn serve(self, shutdown: &CancellationToken, mut on_end: impl FnMut(&WorkerEnd)) -> Vec<WorkerEnd> {
        let mut watching = JoinSet::new();
        for worker in self.workers {
            watching.spawn(worker.watch(shutdown.clone()));
        }
        let mut ends = Vec::with_capacity(watching.len());
        while let Some(joined) = watching.join_next().await {
            match joined {
                Ok(end) => {
                    on_end(&end);
                    ends.push(end);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled only when the runtime shuts down; the child is killed on drop.
                Err(_) => {}
            }
        }
        ends
    }

    /// SIGKILL to every worker, then reap them and let their stderr drain (their
    /// last words come before the caller's error).
    async fn kill_all(self) {
        let mut workers = self.workers;
        for worker in &mut workers {
            let _ = worker.child.start_kill();
        }
        for worker in &mut workers {
            let _ = worker.child.wait().await;
            let _ = tokio::time::timeout(DRAIN, &mut worker.stderr).await;
        }
    }
}

/// Spawns every command, then waits until `ready_timeout` for each to say it
/// is ready on `addr`.
async fn start_commands(
    commands: Vec<Command>,
    addr: SocketAddr,
    ready_timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Workers>> {
    let total = commands.len();
    let mut workers = Workers { workers: Vec::with_capacity(total) };
    for command in commands {
        match Worker::spawn(command) {
            Ok(worker) => workers.workers.push(worker),
            Err(e) => {
                workers.kill_all().await;
                return Err(e);
            }
        }
    }

    // They start side by side: one deadline for all.
    let deadline = Instant::now() + ready_timeout;
    for i in 0..total {
        let ready = tokio::select! {
            () = shutdown.cancelled() => None,
            ready = tokio::time::timeout_at(deadline, workers.workers[i].messages.ready()) => Some(ready),
        };
        let Some(ready) = ready else {
            workers.kill_all().await;
            return Ok(None);
        };
        let worker = &mut workers.workers[i];
        let failure = match ready {
            Ok(Ok(Some((at, _)))) if at == addr => continue,
            Ok(Ok(Some((at, _)))) => format!("listens on {at} instead of {addr}"),
            Ok(Ok(None)) => format!("exited before it was ready ({})", exit_status(&mut worker.child).await),
            Ok(Err(e)) => format!("could not be read from: {e}"),
            Err(_elapsed) => format!("printed no ready line within {ready_timeout:?}"),
        };
        let pid = worker.pid;
        workers.kill_all().await;
        bail!("worker {} of {total} (pid {pid}) {failure}; every worker was stopped", i + 1);
    }
    Ok(Some(workers))
}

impl Worker {
    /// Spawns `command` with its stdout piped (for its messages) and its stderr
    /// relayed.
    fn spawn(mut command: Command) -> anyhow::Result<Worker> {
        prepare(&mut command);
        command.stderr(Stdio::piped());
        let program = command.as_std().get_program().to_owned();
        let mut child = command.spawn().with_context(|| format!("starting a worker {program:?}"))?;
        let pid = child.id().context("a worker exited as soon as it started")?;
        let stdout = child.stdout.take().context("a worker's stdout is not piped")?;
        let stderr = child.stderr.take().context("a worker's stderr is not piped")?;
        let stderr = tokio::spawn(relay_stderr(pid, stderr));
        Ok(Worker { pid, child, messages: ChildMessages::new(stdout), stderr })
    }

    /// Waits for the worker to exit or for `shutdown`, then stops it.
    async fn watch(mut self, shutdown: CancellationToken) -> WorkerEnd {
        let ending = tokio::select! {
            biased;
            () = shutdown.cancelled() => self.stop(STOP_GRACE).await,
            status = self.child.wait() => match status {
                Ok(status) => Ending::Died(status),
                Err(e) => {
                    let _ = self.child.kill().await;
                    Ending::Lost(format!("waiting for it: {e}"))
                }
            },
        };
        // Its last words on stderr come before the caller hears of its end.
        let deadline = Instant::now() + DRAIN;
        let summary =
            tokio::time::timeout_at(deadline, self.messages.summary()).await.ok().and_then(Result::ok).flatten();
        let _ = tokio::time::timeout_at(deadline, self.stderr).await;
        WorkerEnd { pid: self.pid, ending, summary: summary.map(|worker| worker.summary) }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaped in every case.
    async fn stop(&mut self, grace: Duration) -> Ending {
        match self.child.try_wait() {
            Ok(Some(status)) => return Ending::Stopped(status),
            Ok(None) => {}
            Err(e) => {
                let _ = self.child.kill().await;
                return Ending::Lost(format!("checking on it: {e}"));
            }
        }
        // Not reaped yet, so the pid cannot belong to another process.
        if let Err(e) = send_signal(self.pid, libc::SIGTERM) {
            let _ = self.child.kill().await;
            return Ending::Lost(format!("{e:#}"));
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Ending::Stopped(status),
            Ok(Err(e)) => {
                let _ = self.child.kill().await;
                Ending::Lost(format!("waiting for it: {e}"))
            }
            Err(_elapsed) => {
                let _ = self.child.kill().await;
                Ending::Killed
            }
        }
    }
}

/// Copies a worker's stderr to ours line by line, each line prefixed with its
/// pid. Reads until EOF whatever the bytes, so the worker never writes into a
/// closed pipe.
async fn relay_stderr(pid: u32, stderr: ChildStderr) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match stderr.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        crate::stderr::line(format_args!(
            "sockcap serve: worker pid {pid}: {}",
            String::from_utf8_lossy(&line).trim_end()
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::embedded::messages::{ServeMsg, TargetSummary};

    const ADDR: &str = "127.0.0.1:5555";
    const READY: &str = r#"echo '{"msg":"ready","addr":"127.0.0.1:5555"}'"#;

    /// Stand-ins for workers (the unit-test binary is not sockcap) that write
    /// their pids to a file, so a test can check that none is left.
    struct Scripts(PathBuf);

    impl Scripts {
        fn new(tag: &str) -> Scripts {
            let path = std::env::temp_dir().join(format!("sockcap-workers-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Scripts(path)
        }

        fn shell(&self, script: &str) -> Command {
            let mut command = Command::new("sh");
            command.arg("-c").arg(format!("echo $$ >> {}; {script}", self.0.display()));
            command
        }

        /// Says it is ready, then serves until SIGTERM, when it says `summary`.
        fn polite(&self, summary: ServeSummary) -> Command {
            let msg = ServeMsg::Summary(TargetSummary { summary, processes: 1, reported: 1 });
            let msg = serde_json::to_string(&msg).unwrap();
            self.shell(&format!(
                "summary() {{ echo '{msg}'; }}; trap 'summary; exit 0' TERM; {READY}; while :; do sleep 0.05; done"
            ))
        }

        /// Every script started so far.
        fn pids(&self) -> Vec<u32> {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            text.lines().map(|l| l.parse().unwrap()).collect()
        }
    }

    impl Drop for Scripts {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn is_alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists (a zombie does too).
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    async fn start(commands: Vec<Command>, shutdown: &CancellationToken) -> anyhow::Result<Option<Workers>> {
        start_commands(commands, ADDR.parse().unwrap(), Duration::from_secs(10), shutdown).await
    }

    #[test]
    fn one_process_until_its_limit_then_enough_with_headroom() {
        assert_eq!(workers_for(0, 20_000), 1);
        assert_eq!(workers_for(19_900, 20_000), 1);
        assert_eq!(workers_for(19_901, 20_000), 2);
        assert_eq!(workers_for(50_000, 20_000), 3);
        // 39,800 would fill two processes exactly; the hash is not that even.
        assert_eq!(workers_for(39_800, 20_000), 3);
        assert_eq!(workers_for(u64::MAX, 200), MAX_WORKERS);
    }

    #[tokio::test]
    async fn starts_every_worker_and_adds_up_their_summaries_at_shutdown() {
        let scripts = Scripts::new("summaries");
        let shutdown = CancellationToken::new();
        let commands = vec![
            scripts.polite(ServeSummary { accepted: 2, connects: 1, accept_errors: 0 }),
            scripts.polite(ServeSummary { accepted: 3, connects: 0, accept_errors: 4 }),
        ];
        let workers = start(commands, &shutdown).await.unwrap().expect("not interrupted");
        let pids: Vec<u32> = workers.workers.iter().map(|w| w.pid).collect();
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|&pid| is_alive(pid)));

        shutdown.cancel();
        let mut notes = Vec::new();
        let ends = workers.serve(&shutdown, |end| notes.extend(end.note())).await;
        assert!(notes.is_empty(), "{notes:?}");
        assert!(ends.iter().all(|e| matches!(e.ending, Ending::Stopped(s) if s.success())), "{ends:?}");
        let mut total = ServeSummary::default();
        ends.iter().filter_map(|e| e.summary).for_each(|s| total.add(s));
        assert_eq!(total, ServeSummary { accepted: 5, connects: 1, accept_errors: 4 });
        assert!(pids.iter().all(|&pid| !is_alive(pid)), "reaped");
    }

    #[tokio::test]
    async fn a_worker_that_fails_to_start_stops_the_others() {
        let scripts = Scripts::new("fails");
        let shutdown = CancellationToken::new();
        let commands = vec![
            scripts.polite(ServeSummary::default()),
            scripts.shell("echo 'cannot bind' >&2; exit 3"),
            scripts.polite(ServeSummary::default()),
        ];
        let err = start(commands, &shutdown).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("worker 2 of 3 (pid "), "{message}");
        assert!(message.contains("exited before it was ready (exit status: 3)"), "{message}");
        // The third may be killed before it wrote its pid: then it never ran.
        let pids = scripts.pids();
        assert!(pids.len() >= 2, "{pids:?}");
        assert!(pids.iter().all(|&pid| !is_alive(pid)), "workers left behind: {pids:?}");
    }

    #[tokio::test]
    async fn a_worker_with_another_address_is_refused() {
        let scripts = Scripts::new("address");
        let shutdown = CancellationToken::new();
        let other = scripts.shell(r#"echo '{"msg":"ready","addr":"127.0.0.1:6666"}'; exec sleep 30"#);
        let err = start(vec![other], &shutdown).await.unwrap_err();
        assert!(format!("{err:#}").contains("listens on 127.0.0.1:6666 instead of 127.0.0.1:5555"), "{err:#}");
        assert!(scripts.pids().iter().all(|&pid| !is_alive(pid)));
    }

    #[tokio::test]
    async fn gives_up_on_a_worker_that_never_gets_ready() {
        let scripts = Scripts::new("never");
        let shutdown = CancellationToken::new();
        let commands = vec![scripts.polite(ServeSummary::default()), scripts.shell("exec sleep 30")];
        let err = start_commands(commands, ADDR.parse().unwrap(), Duration::from_secs(1), &shutdown).await.unwrap_err();
        assert!(format!("{err:#}").contains("worker 2 of 2 (pid "), "{err:#}");
        assert!(format!("{err:#}").contains("no ready line within 1s"), "{err:#}");
        let pids = scripts.pids();
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|&pid| !is_alive(pid)), "workers left behind: {pids:?}");
    }

    #[tokio::test]
    async fn shutdown_while_starting_kills_the_started_workers() {
        let scripts = Scripts::new("interrupted");
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = start(vec![scripts.shell("exec sleep 30")], &shutdown).await.unwrap();
        assert!(started.is_none());
        assert!(scripts.pids().iter().all(|&pid| !is_alive(pid)));
    }

    #[tokio::test]
    async fn a_worker_that_dies_while_serving_is_noted_and_the_others_serve_on() {
        let scripts = Scripts::new("dies");
        let shutdown = CancellationToken::new();
        let commands = vec![
            scripts.shell(&format!("{READY}; sleep 0.2; exit 9")),
            scripts.polite(ServeSummary { accepted: 1, ..ServeSummary::default() }),
        ];
        let workers = start(commands, &shutdown).await.unwrap().unwrap();
        let survivor = workers.workers[1].pid;
        let mut notes = Vec::new();
        let ends = workers
            .serve(&shutdown, |end| {
                notes.extend(end.note());
                // The death comes first, while the survivor still serves.
                if matches!(end.ending, Ending::Died(_)) {
                    assert!(is_alive(survivor), "the survivor serves on");
                    shutdown.cancel();
                }
            })
            .await;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("exited while serving (exit status: 9)"), "{notes:?}");
        let survived = ends.iter().find(|e| e.pid == survivor).unwrap();
        assert!(matches!(survived.ending, Ending::Stopped(s) if s.success()), "{ends:?}");
        assert_eq!(survived.summary.map(|s| s.accepted), Some(1));
        assert!(!is_alive(survivor));
    }

    #[tokio::test]
    async fn kills_a_worker_that_ignores_sigterm() {
        let scripts = Scripts::new("stubborn");
        let shutdown = CancellationToken::new();
        let stubborn = scripts.shell(&format!("trap '' TERM; {READY}; while :; do sleep 0.05; done"));
        let workers = start(vec![stubborn], &shutdown).await.unwrap().unwrap();
        let mut worker = workers.workers.into_iter().next().unwrap();
        let pid = worker.pid;
        assert!(matches!(worker.stop(Duration::from_millis(200)).await, Ending::Killed));
        assert!(!is_alive(pid), "killed and reaped");
    }
}
