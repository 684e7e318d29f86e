//! The embedded target's listener: binding (with TCP_DEFER_ACCEPT when asked),
//! the accept loop with its backoff on exhausted resources, the listener that
//! never accepts, and the shutdown that drops every connection.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ServerConfig;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection;
use super::options::{ServeOptions, ServeSummary};

/// Pause after an accept error that a retry cannot fix at once (EMFILE, ...):
/// the listener stays readable, so retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Serves `opts.protocol` on `opts.listen` until `shutdown` is cancelled.
///
/// Calls `on_ready` with the bound address (port 0 resolved) once the socket
/// listens. On shutdown it stops accepting, drops every connection and returns
/// what it did. Errors only if the socket cannot be set up.
pub async fn serve(
    opts: ServeOptions,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<ServeSummary> {
    serve_over(opts, None, shutdown, on_ready).await
}

/// [`serve`], over TLS with `tls`'s certificate when given (`opts.transport` is then
/// `tls`).
pub async fn serve_over(
    opts: ServeOptions,
    tls: Option<Arc<ServerConfig>>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<ServeSummary> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let listener = bind(opts.listen, opts.backlog, opts.defer_accept)
        .with_context(|| format!("listening on {} for `sockcap serve`", opts.listen))?;
    let local = listener.local_addr().context("reading the address the embedded target is bound to")?;
    on_ready(local);

    if !opts.accept {
        // Completed handshakes stay in the accept queue until it is full; then
        // the kernel drops SYNs. Closing the listener resets the queued ones.
        shutdown.cancelled().await;
        return Ok(ServeSummary::default());
    }

    let tracker = TaskTracker::new();
    let connects = Arc::new(AtomicU64::new(0));
    let mut summary = ServeSummary::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                summary.accepted += 1;
                let connects = Arc::clone(&connects);
                let stop = shutdown.clone();
                match (&acceptor, opts.transport.uses_ws()) {
                    (None, false) => tracker.spawn(connection::run(stream, &opts, stop, connects)),
                    (Some(tls), false) => {
                        tracker.spawn(connection::run_tls(stream, tls.clone(), &opts, stop, connects))
                    }
                    (tls, true) => tracker.spawn(connection::run_ws(stream, tls.clone(), &opts, stop, connects)),
                };
            }
            Err(e) => {
                summary.accept_errors += 1;
                if let Some(pause) = accept_backoff(&e) {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    drop(listener);
    tracker.close();
    tracker.wait().await;
    summary.connects = connects.load(Ordering::Relaxed);
    Ok(summary)
}

/// A listening socket with SO_REUSEADDR (rebinding over TIME_WAIT) and
/// SO_REUSEPORT (several `serve` processes sharing one port), and
/// TCP_DEFER_ACCEPT if `defer_accept` is given.
fn bind(addr: SocketAddr, backlog: u32, defer_accept: Option<Duration>) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(socket2::Protocol::TCP))
        .context("creating the socket")?;
    socket.set_reuse_address(true).context("setting SO_REUSEADDR")?;
    socket.set_reuse_port(true).context("setting SO_REUSEPORT")?;
    if let Some(delay) = defer_accept {
        set_defer_accept(&socket, delay).context("setting TCP_DEFER_ACCEPT")?;
    }
    socket.set_nonblocking(true).context("making the socket non-blocking")?;
    socket.bind(&addr.into()).context("binding")?;
    // The kernel clamps the backlog to net.core.somaxconn anyway.
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).context("listening")?;
    TcpListener::from_std(socket.into()).context("registering the listener with tokio")
}

/// Sets TCP_DEFER_ACCEPT to `delay` in whole seconds, rounded up: the kernel
/// keeps a handshake that brought no data as a request socket (SYN_RECV) and
/// completes it when data arrives or, at the latest, at the first point of its
/// SYN-ACK retransmission schedule (1, 3, 7, 15, 31, 63 s... after the
/// handshake) that reaches `delay`: measured 1 s → 1 s, 2 s → 3 s, 5 s → 7 s.
fn set_defer_accept(socket: &Socket, delay: Duration) -> io::Result<()> {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    crate::socket::set_int_option(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
}

/// How long to wait before the next accept after `err`: nothing for errors
/// that concern one aborted connection, [`ACCEPT_BACKOFF`] for the rest
/// (descriptor or memory exhaustion, and anything unknown).
fn accept_backoff(err: &io::Error) -> Option<Duration> {
    match err.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => None,
        _ => Some(ACCEPT_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_on_exhausted_resources_only() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        let enobufs = io::Error::from_raw_os_error(libc::ENOBUFS);
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(accept_backoff(&emfile), Some(ACCEPT_BACKOFF));
        assert_eq!(accept_backoff(&enfile), Some(ACCEPT_BACKOFF));
        assert_eq!(accept_backoff(&enobufs), Some(ACCEPT_BACKOFF));
        assert_eq!(accept_backoff(&aborted), None);
    }

    #[tokio::test]
    async fn two_servers_share_a_port() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 16, None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(addr, 16, None).expect("SO_REUSEPORT lets a second listener bind");
        assert_eq!(second.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn reports_a_bind_failure_with_the_address() {
        // A listener without SO_REUSEPORT owns its port exclusively.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = ServeOptions {
            listen: taken.local_addr().unwrap(),
            protocol: crate::protocol::Protocol::Tcp,
            backlog: 16,
            ..ServeOptions::default()
        };
        let err = serve(opts, CancellationToken::new(), |_| panic!("not ready")).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(&opts.listen.to_string()), "{message}");
        assert!(message.contains("binding"), "{message}");
    }
}
