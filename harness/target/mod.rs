//! The embedded target (`sockcap serve`): a TCP / MQTT 3.1.1 server, built to
//! hold many idle connections cheaply, that a run can start when no real
//! target is given.
//!
//! - [`serve`] (in `server`): bind with SO_REUSEADDR + SO_REUSEPORT, accept until
//!   shutdown, one task per connection (the per-connection protocol lives in
//!   `connection`).
//! - [`run_serve_process`]: the body of the `sockcap serve` command: signals,
//!   the ready line on stdout, a summary on stderr.
//! - [`EmbeddedTarget`] (in `child`): runs `sockcap serve` as a child process
//!   and waits for its ready line, so the target's descriptors and CPU are not
//!   the client's.
//!
//! The ready line is the contract between the two processes: [`ready_line`]
//! writes it, [`parse_ready_line`] reads it.
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
#[cfg(test)]
mod recipes;
mod server;
#[cfg(test)]
mod testing;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::protocol::Protocol;

pub use child::EmbeddedTarget;
pub use server::serve;

/// A listen backlog as large as the kernel allows: it is clamped to
/// `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 65_535;

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
        }
    }
}

/// What the embedded target does when a client half-closes (its FIN arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEof {
    /// Close its end too (as mosquitto does): the client ends in TIME_WAIT.
    #[default]
    Close,
    /// Keep its end open until the run ends: client FIN_WAIT_2, server CLOSE_WAIT
    /// (the shape of a server that leaks connections).
    Hold,
}

impl std::fmt::Display for OnEof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnEof::Close => "close",
            OnEof::Hold => "hold",
        })
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

/// Runs `sockcap serve` until SIGTERM or SIGINT: prints the ready line on
/// stdout, serves, then prints a one-line summary on stderr. Call it inside a
/// tokio runtime.
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

    let protocol = opts.protocol;
    let mut ready_error = None;
    let summary = serve(opts, shutdown.clone(), |addr| {
        if let Err(e) = print_ready_line(addr, protocol) {
            // Nobody can find a target that could not announce itself.
            ready_error = Some(e);
            shutdown.cancel();
        }
    })
    .await?;
    if let Some(e) = ready_error {
        return Err(e).context("printing the ready line on stdout");
    }
    eprintln!(
        "sockcap serve: {} accepted, {} MQTT connects, {} accept errors",
        summary.accepted, summary.connects, summary.accept_errors
    );
    Ok(())
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
}
