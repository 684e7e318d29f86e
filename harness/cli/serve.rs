//! `sockcap serve`: the embedded target on its own.

use super::failure::{exit, Failure};
use crate::descriptors;
use crate::embedded::{self, ServeOptions};
use crate::protocol::Protocol;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the ready line says which).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub protocol: Protocol,
    /// Listen backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = crate::embedded::DEFAULT_BACKLOG)]
    pub backlog: u32,
    /// When a client half-closes: close our end too, or hold it (CLOSE_WAIT here,
    /// FIN_WAIT_2 on the client).
    #[arg(long, value_enum, default_value_t = crate::protocol::OnEof::Close)]
    pub on_eof: crate::protocol::OnEof,
    /// Listen but never accept: once backlog + 1 handshakes fill the accept queue,
    /// further SYNs are dropped and those clients stay in SYN_SENT.
    #[arg(long)]
    pub no_accept: bool,
    /// Set TCP_DEFER_ACCEPT ("30s", whole seconds rounded up): a client that sends
    /// nothing stays SYN_RECV here (ESTABLISHED on its side) until the delay ends.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub defer_accept: Option<Duration>,
    /// Never read from accepted connections (mqtt: once CONNACK is sent), so the
    /// client's data fills the window; the client's FIN is then never noticed.
    #[arg(long)]
    pub no_read: bool,
    /// That long after accepting a connection, shut down its write side (send FIN
    /// first) and keep the socket, reading per --no-read and --on-eof.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_after: Option<Duration>,
    /// Processes sharing the port with SO_REUSEPORT (this one and N - 1 children),
    /// each holding a share of the connections under its own descriptor limit.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = super::values::parse_process_count)]
    pub workers: u32,
    /// What the protocol runs over: tcp, tls (with --tls-cert and --tls-key, or else a
    /// certificate for 127.0.0.1, ::1 and localhost made now, whose CA file the ready
    /// line names), ws (WebSocket, subprotocol mqtt, any path) or wss (ws over tls).
    #[arg(long, default_value = "tcp", value_parser = parse_transport)]
    pub transport: crate::transport::Transport,
    /// The certificate chain (PEM) a TLS target serves; with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Run on one thread: set by a `serve --workers N` parent for its children, which
    /// share the cores with it.
    #[arg(long, hide = true)]
    pub one_thread: bool,
}

fn parse_transport(name: &str) -> Result<crate::transport::Transport, String> {
    crate::transport::Transport::parse(name).ok_or_else(|| format!("`{name}`: use tcp, tls, ws or wss"))
}

pub fn serve(args: ServeArgs) -> Result<u8, Failure> {
    use crate::transport::Transport;
    let bad = |why: &str| Err(Failure::bad_input(anyhow::anyhow!("{why}")));
    if args.transport != Transport::Tcp && (args.no_read || args.shutdown_after.is_some()) {
        return bad("--no-read and --shutdown-after are TCP recipes the TLS and WebSocket targets do not serve; drop them or use --transport tcp");
    }
    if !args.transport.uses_tls() && args.tls_cert.is_some() {
        return bad("--tls-cert and --tls-key need --transport tls or wss");
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(embedded::ServeTls { cert, key, ca: None, made_dir: None }),
        _ => None,
    };
    descriptors::raise_nofile()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("raising RLIMIT_NOFILE")))?;
    let opts = ServeOptions {
        listen: args.listen,
        protocol: args.protocol,
        transport: args.transport,
        backlog: args.backlog,
        on_eof: args.on_eof,
        accept: !args.no_accept,
        defer_accept: args.defer_accept,
        read: !args.no_read,
        shutdown_after: args.shutdown_after,
        workers: args.workers,
    };
    // One of several processes sharing the port: one thread each, as client workers.
    let rt = if args.workers > 1 || args.one_thread {
        super::setup::tune_malloc_for_connections();
        super::setup::runtime_on_this_thread()?
    } else {
        super::setup::runtime()?
    };
    rt.block_on(embedded::run_serve_process(opts, tls)).map_err(Failure::environment)?;
    Ok(exit::PASSED)
}
