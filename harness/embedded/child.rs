//! The embedded target as a child process: `sockcap serve` started from the
//! current executable, found through its ready message, stopped with SIGTERM
//! (then SIGKILL), and killed if the handle is dropped. Its summary message at
//! exit becomes the summary line on our stderr.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, ChildStdout, Command};

use super::messages::{summary_line, Audience, ChildMessages};
use super::options::ServeOptions;
use crate::child_process::prepare;

/// How long `sockcap serve` may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `sockcap serve` may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for the rest of a child's messages once it has exited.
pub(super) const DRAIN: Duration = Duration::from_secs(1);

/// A running `sockcap serve` child process.
#[derive(Debug)]
pub struct EmbeddedTarget {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// Over TLS with a certificate it made: the CA file to trust.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Its process id, e.g. to find its sockets or limits in /proc. With
    /// `workers` > 1 this is the process that started the others (and holds a
    /// share of the connections too).
    pub pid: u32,
    /// The process; killed when dropped, so the target never outlives the run.
    child: Child,
    /// Its stdout, kept open (a later write must not fail with EPIPE) for its
    /// summary message.
    messages: ChildMessages<ChildStdout>,
}

impl EmbeddedTarget {
    /// Starts `sockcap serve` with `opts` as flags (`--workers` included) from
    /// the current executable and waits for its ready message, which it sends
    /// once all its worker processes listen. Call it from a thread that outlives
    /// the target (see [`prepare`]).
    pub async fn spawn(opts: ServeOptions) -> anyhow::Result<EmbeddedTarget> {
        let exe = std::env::current_exe().context("locating the sockcap executable to start the embedded target")?;
        spawn_command(serve_command(exe, &serve_args(&opts)), READY_TIMEOUT).await
    }

    /// Stops the target: SIGTERM, up to 5 s to exit, then SIGKILL; the process
    /// is reaped in every case, and the summary line it sent is printed on
    /// stderr. Errs if it had already exited, exited with a failure, or had to
    /// be killed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_within(STOP_GRACE).await
    }

    async fn stop_within(mut self, grace: Duration) -> anyhow::Result<()> {
        let exited = self.child.try_wait().context("checking on the embedded target")?;
        if let Some(status) = exited {
            self.print_summary().await;
            bail!("the embedded target (pid {}) had already exited ({status})", self.pid);
        }
        // Not reaped yet, so the pid cannot belong to another process.
        send_signal(self.pid, libc::SIGTERM)?;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the embedded target to exit")?;
                self.print_summary().await;
                check_clean_exit(self.pid, status)
            }
            Err(_elapsed) => {
                self.child.kill().await.context("killing the embedded target")?;
                bail!("the embedded target (pid {}) did not exit within {grace:?} of SIGTERM and was killed", self.pid)
            }
        }
    }

    /// Kills the target at once, a fault on purpose: SIGKILL to every process of ours
    /// that listens on its address (it and its worker processes, none other) in one go,
    /// so every connection drops, then reaps it. Returns the process ids killed.
    pub async fn kill_all(mut self) -> anyhow::Result<Vec<u32>> {
        let listeners = probe::listeners_for(self.addr).map(|l| l.processes).unwrap_or_default();
        let mut pids: Vec<u32> =
            listeners.iter().map(|p| p.pid).filter(|pid| parent_of(*pid) == Some(self.pid)).collect();
        pids.insert(0, self.pid);
        for pid in &pids {
            // A worker that already ended is no error: the rest still die.
            let _ = send_signal(*pid, libc::SIGKILL);
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(_)) => Ok(pids),
            Ok(Err(e)) => Err(e).context("reaping the killed embedded target"),
            Err(_) => bail!("the embedded target (pid {}) was still there {STOP_GRACE:?} after SIGKILL", self.pid),
        }
    }

    /// Prints the summary line of an exited target on stderr, if it sent one.
    async fn print_summary(&mut self) {
        if let Ok(Ok(Some(summary))) = tokio::time::timeout(DRAIN, self.messages.summary()).await {
            crate::stderr::line(summary_line(&summary));
        }
    }
}

/// A `sockcap serve` command with `args` that sends this process its messages.
pub(super) fn serve_command(exe: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Command {
    let mut command = Command::new(exe);
    command.args(args);
    Audience::make_parent(&mut command);
    command
}

/// The arguments of the `sockcap serve` command line, for the target of a run
/// and for the workers of a `serve` alike. The misbehaviour flags appear only
/// when they differ from the polite default.
pub(super) fn serve_args(opts: &ServeOptions) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        opts.listen.to_string(),
        "--protocol".into(),
        opts.protocol.to_string(),
        "--backlog".into(),
        opts.backlog.to_string(),
        "--on-eof".into(),
        opts.on_eof.to_string(),
        "--workers".into(),
        opts.workers.to_string(),
    ];
    if !opts.accept {
        args.push("--no-accept".into());
    }
    if let Some(delay) = opts.defer_accept {
        args.extend(["--defer-accept".into(), humantime::format_duration(delay).to_string()]);
    }
    if !opts.read {
        args.push("--no-read".into());
    }
    if let Some(delay) = opts.shutdown_after {
        args.extend(["--shutdown-after".into(), humantime::format_duration(delay).to_string()]);
    }
    if opts.transport != crate::transport::Transport::Tcp {
        args.extend(["--transport".into(), opts.transport.as_str().into()]);
    }
    args
}

/// Spawns `command` and waits up to `ready_timeout` for a ready message on its
/// stdout. On any failure the child is killed and reaped.
async fn spawn_command(mut command: Command, ready_timeout: Duration) -> anyhow::Result<EmbeddedTarget> {
    prepare(&mut command);
    command.stderr(Stdio::inherit());
    let program = command.as_std().get_program().to_owned();
    let mut child = command.spawn().with_context(|| format!("starting the embedded target {program:?}"))?;
    let pid = child.id().context("the embedded target exited as soon as it started")?;
    let stdout = child.stdout.take().context("the embedded target's stdout is not piped")?;
    let mut messages = ChildMessages::new(stdout);

    match tokio::time::timeout(ready_timeout, messages.ready()).await {
        Ok(Ok(Some((addr, tls_ca)))) => Ok(EmbeddedTarget { addr, tls_ca, pid, child, messages }),
        Ok(Ok(None)) => {
            let status = exit_status(&mut child).await;
            bail!("the embedded target (pid {pid}) exited before it was ready ({status})")
        }
        Ok(Err(e)) => {
            kill_and_reap(&mut child).await;
            Err(e).with_context(|| format!("reading the embedded target's (pid {pid}) stdout"))
        }
        Err(_elapsed) => {
            kill_and_reap(&mut child).await;
            bail!("the embedded target (pid {pid}) printed no ready line within {ready_timeout:?}")
        }
    }
}

/// The exit status of a child that closed its stdout, for an error message.
/// One that keeps running without its stdout is killed.
pub(super) async fn exit_status(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("exit status unknown: {e}"),
        Err(_elapsed) => {
            kill_and_reap(child).await;
            "it closed its stdout and was killed".to_string()
        }
    }
}

/// Best-effort SIGKILL and reap, on a path that already reports an error.
async fn kill_and_reap(child: &mut Child) {
    let _ = child.kill().await;
}

fn check_clean_exit(pid: u32, status: ExitStatus) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("the embedded target (pid {pid}) exited with {status} after SIGTERM")
    }
}

/// The parent of process `pid`, from /proc/PID/stat; `None` when it cannot be read.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces and parentheses: state, then ppid.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn send_signal(pid: u32, signal: libc::c_int) -> anyhow::Result<()> {
    let raw = libc::pid_t::try_from(pid).with_context(|| format!("pid {pid} out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(raw, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending signal {signal} to `sockcap serve` (pid {pid})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `sockcap serve`: the unit-test binary is not sockcap.
    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        command
    }

    const READY: &str = r#"echo '{"msg":"ready","addr":"127.0.0.1:5555"}'"#;

    fn is_alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn builds_the_serve_command_line() {
        let opts = ServeOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            protocol: crate::protocol::Protocol::Mqtt,
            backlog: 128,
            on_eof: crate::protocol::OnEof::Hold,
            ..ServeOptions::default()
        };
        let args = serve_args(&opts);
        assert_eq!(
            args,
            [
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                "mqtt",
                "--backlog",
                "128",
                "--on-eof",
                "hold",
                "--workers",
                "1"
            ]
        );
    }

    #[test]
    fn passes_the_misbehaviour_flags_on() {
        let opts = ServeOptions {
            protocol: crate::protocol::Protocol::Tcp,
            backlog: 1,
            accept: false,
            defer_accept: Some(Duration::from_secs(30)),
            read: false,
            shutdown_after: Some(Duration::from_millis(1500)),
            workers: 4,
            ..ServeOptions::default()
        };
        let args = serve_args(&opts);
        assert_eq!(args[11..], ["--no-accept", "--defer-accept", "30s", "--no-read", "--shutdown-after", "1s 500ms"]);
        // What the child parses is what the parent meant.
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(std::iter::once("sockcap".to_string()).chain(args)).unwrap();
        let crate::cli::Command::Serve(parsed) = cli.command else { panic!("not a serve command") };
        assert!(parsed.no_accept && parsed.no_read);
        assert_eq!(parsed.defer_accept, opts.defer_accept);
        assert_eq!(parsed.shutdown_after, opts.shutdown_after);
        assert_eq!(parsed.backlog, 1);
        assert_eq!(parsed.workers, 4);
    }

    #[tokio::test]
    async fn finds_the_ready_line_and_stops_with_sigterm() {
        let script = format!("trap 'exit 0' TERM; echo starting; {READY}; while :; do sleep 0.05; done");
        let target = spawn_command(shell(&script), Duration::from_secs(10)).await.unwrap();
        assert_eq!(target.addr, "127.0.0.1:5555".parse().unwrap());
        let pid = target.pid;
        assert!(is_alive(pid));
        target.stop_within(Duration::from_secs(5)).await.unwrap();
        assert!(!is_alive(pid), "reaped");
    }

    #[tokio::test]
    async fn reports_the_exit_status_of_a_child_that_dies_before_ready() {
        let err = spawn_command(shell("echo starting; exit 3"), Duration::from_secs(10)).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("exited before it was ready"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
    }

    #[tokio::test]
    async fn gives_up_on_a_child_that_never_gets_ready() {
        let err = spawn_command(shell("sleep 30"), Duration::from_millis(200)).await.unwrap_err();
        assert!(format!("{err:#}").contains("no ready line"), "{err:#}");
    }

    #[tokio::test]
    async fn kills_a_child_that_ignores_sigterm() {
        let script = format!("trap '' TERM; {READY}; while :; do sleep 0.05; done");
        let target = spawn_command(shell(&script), Duration::from_secs(10)).await.unwrap();
        let pid = target.pid;
        let err = target.stop_within(Duration::from_millis(200)).await.unwrap_err();
        assert!(format!("{err:#}").contains("was killed"), "{err:#}");
        assert!(!is_alive(pid), "killed and reaped");
    }

    #[tokio::test]
    async fn reports_a_failing_exit_after_sigterm() {
        let script = format!("trap 'exit 7' TERM; {READY}; while :; do sleep 0.05; done");
        let target = spawn_command(shell(&script), Duration::from_secs(10)).await.unwrap();
        let err = target.stop_within(Duration::from_secs(5)).await.unwrap_err();
        assert!(format!("{err:#}").contains("exit status: 7"), "{err:#}");
    }
}
