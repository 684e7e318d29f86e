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

mod child;
mod connection;
mod server;

use std::io::Write;
use std::net::SocketAddr;

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

/// What the embedded target listens on and speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to bind; port 0 picks a free port, reported by the ready line.
    pub listen: SocketAddr,
    /// Protocol spoken on every accepted connection.
    pub protocol: Protocol,
    /// Listen backlog (accept queue length), clamped by the kernel to
    /// `net.core.somaxconn`.
    pub backlog: u32,
    /// What a connection does when the client's FIN arrives.
    pub on_eof: OnEof,
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
