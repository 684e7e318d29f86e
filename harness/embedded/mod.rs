//! The embedded target (`sockcap serve`): a TCP / MQTT 3.1.1 server, built to
//! hold many idle connections cheaply, that a run can start when no real
//! target is given.
//!
//! - [`serve`] (in `server`): bind with SO_REUSEADDR + SO_REUSEPORT, accept until
//!   shutdown, one task per connection (the per-connection protocol lives in
//!   `connection`).
//! - [`run_serve_process`]: the body of the `sockcap serve` command: signals,
//!   the worker processes, the ready line on stdout, a summary on stderr.
//! - [`EmbeddedTarget`] (in `child`): runs `sockcap serve` as a child process
//!   and waits for its ready line, so the target's descriptors and CPU are not
//!   the client's.
//! - `workers`: past one process's descriptor limit, `sockcap serve --workers N`
//!   binds first (port 0 resolved), then starts N − 1 more `sockcap serve`
//!   processes on that address; SO_REUSEPORT lets all N listen on the port and
//!   the kernel hashes each new connection to one of them. The parent is ready
//!   when every worker has printed its ready line into a pipe (the workers'
//!   stdout never reaches the parent's). Workers die with the parent
//!   (PR_SET_PDEATHSIG), get SIGTERM when it stops (SIGKILL after 3 s), and a
//!   worker that dies while serving is noted on stderr while the rest serve on.
//!   [`workers_for`] says how many processes hold a number of connections.
//!
//! The ready line is the contract between the two processes: [`ready_line`]
//! writes it, [`parse_ready_line`] reads it. The summary line on stderr at exit
//! is one for the whole target: the parent relays its workers' stderr, takes
//! their summary lines out, and adds them to its own.
//!
//! Besides serving politely, the target can misbehave on purpose so that a
//! scenario can put sockets in every TCP state ([`ServeOptions`]): never accept
//! (a full accept queue: clients stay in SYN_SENT), defer the accept
//! (TCP_DEFER_ACCEPT: SYN_RECV here while the client is ESTABLISHED), never read
//! (the client's data fills the window and its FIN queues behind it:
//! FIN_WAIT_1, CLOSING, LAST_ACK), and send its FIN first after a delay
//! (TIME_WAIT here, CLOSE_WAIT on the client).

mod child;
mod connection;
mod quiet_port;
#[cfg(test)]
mod recipes;
mod server;
#[cfg(test)]
mod testing;
mod workers;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::protocol::{OnEof, Protocol};

pub(crate) use child::prepare as prepare_child;
pub use child::EmbeddedTarget;
pub use quiet_port::quiet_port;
pub use server::serve;
pub use workers::workers_for;

/// The most processes one embedded target may run (`--workers`, `embedded.workers`).
pub use crate::descriptors::MAX_WORKERS;
/// The default listen backlog (`--backlog`, `embedded.backlog`).
pub use crate::socket::DEFAULT_BACKLOG;

/// What the embedded target listens on, speaks, and how it treats connections.
///
/// [`ServeOptions::default`] is a polite MQTT server on a free loopback port;
/// the fields after `on_eof` make it misbehave on purpose, each default being
/// the polite behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to bind; port 0 picks a free port, reported by the ready line.
    pub listen: SocketAddr,
    /// Protocol spoken on every accepted connection.
    pub protocol: Protocol,
    /// Listen backlog (accept queue length), clamped by the kernel to
    /// `net.core.somaxconn`. The queue is full once it holds `backlog + 1`
    /// connections.
    pub backlog: u32,
    /// What a connection does when the client's FIN arrives (only noticed while
    /// it reads: see `read`).
    pub on_eof: OnEof,
    /// Accept connections (`--no-accept`: false). When false the target listens
    /// and never calls accept(): `backlog + 1` handshakes complete into the
    /// accept queue, then the kernel drops further SYNs and those clients stay
    /// in SYN_SENT, retrying. The options below then have nothing to act on.
    pub accept: bool,
    /// TCP_DEFER_ACCEPT on the listener (`--defer-accept`; whole seconds,
    /// rounded up; zero turns it off): a client that completes the handshake
    /// and sends nothing stays a SYN_RECV request socket here, ESTABLISHED on
    /// its side, until it sends data or the delay ends.
    pub defer_accept: Option<Duration>,
    /// Read from accepted connections (`--no-read`: false). When false the
    /// target never reads (for `mqtt`: once it has sent CONNACK), so the
    /// client's data fills the receive window and a client FIN queues behind
    /// its unsent data; the peer's FIN is then never noticed, and `on_eof`
    /// never applies.
    pub read: bool,
    /// That long after accepting a connection, shut down its write side
    /// (`--shutdown-after`): the target sends FIN first, keeps the socket, and
    /// goes on reading (or not, per `read`). Pending MQTT replies are dropped,
    /// and a later reply closes the connection.
    pub shutdown_after: Option<Duration>,
    /// Processes listening on the address together (`--workers`, at least 1):
    /// this one and `workers - 1` children, each with its own descriptor limit.
    /// SO_REUSEPORT hashes each new connection to one listener, so each holds
    /// about an equal share; every listener has its own accept queue, so with
    /// `accept` false `workers × (backlog + 1)` handshakes fill them.
    pub workers: u32,
}

impl Default for ServeOptions {
    /// A polite MQTT target on a free port of 127.0.0.1.
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            protocol: Protocol::Mqtt,
            backlog: DEFAULT_BACKLOG,
            on_eof: OnEof::Close,
            accept: true,
            defer_accept: None,
            read: true,
            shutdown_after: None,
            workers: 1,
        }
    }
}

/// What a [`serve`] run did, returned at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServeSummary {
    /// Connections accepted.
    pub accepted: u64,
    /// MQTT CONNECTs answered with CONNACK 0 (always 0 for `tcp`).
    pub connects: u64,
    /// Failed accept calls (EMFILE, ENFILE, ...). While a resource stays
    /// exhausted every retry, one per backoff interval, counts again.
    pub accept_errors: u64,
}

impl ServeSummary {
    /// Adds another process's figures to these.
    fn add(&mut self, other: ServeSummary) {
        self.accepted += other.accepted;
        self.connects += other.connects;
        self.accept_errors += other.accept_errors;
    }
}

const READY_PREFIX: &str = "sockcap serve: listening on ";

/// The line `sockcap serve` prints on stdout once it accepts connections, e.g.
/// `sockcap serve: listening on 127.0.0.1:41234 (mqtt)`.
pub fn ready_line(addr: SocketAddr, protocol: Protocol) -> String {
    format!("{READY_PREFIX}{addr} ({protocol})")
}

/// The bound address in a [`ready_line`], or `None` if `line` is not one.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim_end().strip_prefix(READY_PREFIX)?;
    let addr = rest.split(' ').next()?;
    addr.parse().ok()
}

const SUMMARY_PREFIX: &str = "sockcap serve: ";

/// The line `sockcap serve` prints on stderr at exit, e.g.
/// `sockcap serve: 3 accepted, 2 MQTT connects, 0 accept errors`.
fn summary_line(summary: &ServeSummary) -> String {
    let ServeSummary { accepted, connects, accept_errors } = summary;
    format!("{SUMMARY_PREFIX}{accepted} accepted, {connects} MQTT connects, {accept_errors} accept errors")
}

/// The figures of a [`summary_line`], or `None` if `line` is not exactly one.
fn parse_summary_line(line: &str) -> Option<ServeSummary> {
    let rest = line.trim_end().strip_prefix(SUMMARY_PREFIX)?;
    let (accepted, rest) = rest.split_once(" accepted, ")?;
    let (connects, rest) = rest.split_once(" MQTT connects, ")?;
    let accept_errors = rest.strip_suffix(" accept errors")?;
    let number = |text: &str| text.parse::<u64>().ok();
    Some(ServeSummary {
        accepted: number(accepted)?,
        connects: number(connects)?,
        accept_errors: number(accept_errors)?,
    })
}

/// Runs `sockcap serve` until SIGTERM or SIGINT: binds, starts the worker
/// processes (`opts.workers - 1`) and waits until they listen, prints the ready
/// line on stdout, serves, stops the workers, then prints on stderr one summary
/// line that adds up the figures of every process. Call it inside a tokio
/// runtime, from the future given to `block_on` (the workers die with the
/// thread that starts them).
pub async fn run_serve_process(opts: ServeOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // Install the handlers before the ready line announces us: a SIGTERM sent
    // right after it must drain, not kill the process.
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            () = on_signal.cancelled() => {}
        }
        on_signal.cancel();
    });
    // Also ends the signal task when `serve` fails.
    let _stop_signal_task = shutdown.clone().drop_guard();

    // This process accepts from the moment it listens; the workers start meanwhile.
    let (bound_tx, bound_rx) = oneshot::channel();
    let serving = serve(opts, shutdown.clone(), |addr| {
        let _ = bound_tx.send(addr);
    });
    let workers = async {
        let ends = run_workers(opts, bound_rx, &shutdown).await;
        if ends.is_err() {
            shutdown.cancel();
        }
        ends
    };
    let (summary, ends) = tokio::join!(serving, workers);
    let mut summary = summary?;
    let ends = ends?;

    let mut reported = 1;
    for end in &ends {
        if let Some(worker) = end.summary {
            summary.add(worker);
            reported += 1;
        }
    }
    let line = summary_line(&summary);
    match opts.workers {
        1 => eprintln!("{line}"),
        n if reported == n => eprintln!("{line} (summed over {n} processes)"),
        n => eprintln!("{line} (summed over the {reported} of {n} processes that reported)"),
    }
    Ok(())
}

/// Once `serve` has bound (`bound`), starts the workers, prints the ready line
/// when all of them listen, and waits for shutdown, by when it has stopped them.
/// Errs, with every worker stopped, if one fails to start or the ready line
/// cannot be printed.
async fn run_workers(
    opts: ServeOptions,
    bound: oneshot::Receiver<SocketAddr>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<workers::WorkerEnd>> {
    let Ok(addr) = bound.await else {
        // `serve` failed before it listened and says why.
        return Ok(Vec::new());
    };
    let count = opts.workers.saturating_sub(1);
    let Some(workers) = workers::Workers::start(addr, opts, count, shutdown).await.with_context(|| {
        format!("starting the {count} worker processes of `sockcap serve --workers {}`", opts.workers)
    })?
    else {
        // Interrupted before every worker listened: nothing was announced.
        return Ok(Vec::new());
    };
    let printed = print_ready_line(addr, opts.protocol);
    if printed.is_err() {
        // Nobody can find a target that could not announce itself.
        shutdown.cancel();
    }
    let ends = workers
        .serve(shutdown, |end| {
            if let Some(note) = end.note() {
                eprintln!("sockcap serve: {note}");
            }
        })
        .await;
    printed.context("printing the ready line on stdout")?;
    Ok(ends)
}

fn print_ready_line(addr: SocketAddr, protocol: Protocol) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", ready_line(addr, protocol))?;
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_round_trips() {
        let v4: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(ready_line(v4, Protocol::Mqtt), "sockcap serve: listening on 127.0.0.1:41234 (mqtt)");
        assert_eq!(parse_ready_line(&ready_line(v4, Protocol::Mqtt)), Some(v4));
        let v6: SocketAddr = "[::1]:1883".parse().unwrap();
        let line = format!("{}\n", ready_line(v6, Protocol::Tcp));
        assert_eq!(parse_ready_line(&line), Some(v6));
    }

    #[test]
    fn parse_ready_line_rejects_other_lines() {
        for line in [
            "",
            "listening on 127.0.0.1:1",
            "sockcap serve: listening on ",
            "sockcap serve: listening on localhost:1883 (tcp)",
            "sockcap serve: listening on 127.0.0.1 (tcp)",
            "sockcap serve: 3 accepted, 0 MQTT connects, 0 accept errors",
        ] {
            assert_eq!(parse_ready_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn summary_line_round_trips() {
        let summary = ServeSummary { accepted: 300, connects: 299, accept_errors: 7 };
        let line = summary_line(&summary);
        assert_eq!(line, "sockcap serve: 300 accepted, 299 MQTT connects, 7 accept errors");
        assert_eq!(parse_summary_line(&format!("{line}\n")), Some(summary));
        for other in [
            "",
            "sockcap serve: listening on 127.0.0.1:41234 (mqtt)",
            "sockcap serve: 3 accepted, 0 MQTT connects",
            "sockcap serve: x accepted, 0 MQTT connects, 0 accept errors",
            "sockcap serve: 3 accepted, 0 MQTT connects, 0 accept errors (summed over 3 processes)",
            "sockcap: listening on 127.0.0.1:1 for `sockcap serve`: binding: Address in use",
        ] {
            assert_eq!(parse_summary_line(other), None, "{other:?}");
        }
    }

    #[test]
    fn summaries_add_up() {
        let mut total = ServeSummary { accepted: 1, connects: 2, accept_errors: 3 };
        total.add(ServeSummary { accepted: 10, connects: 20, accept_errors: 30 });
        assert_eq!(total, ServeSummary { accepted: 11, connects: 22, accept_errors: 33 });
    }
}
