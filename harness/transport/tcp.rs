//! The TCP transport, the client side: a socket set up (send buffer, source address
//! and port) and connected, with the fallback to the kernel's port when the one sockcap
//! chose is taken; and writing a short message whole.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Open a socket and connect; returns the instant connect() was called.
///
/// A source port sockcap chose can turn out unusable: held by a socket that does not
/// share it (bind: EADDRINUSE; another program's), or with this very 4-tuple in use by a
/// connection whose port the kernel chose (connect: EADDRNOTAVAIL). The connection then
/// leaves the port to the kernel, on a new socket, calls `port_taken` first, and the
/// report counts it (`ports_taken`). Where the kernel finds no port either, that is the
/// error returned.
pub async fn dial(
    target: SocketAddr,
    source: Option<SocketAddr>,
    sndbuf: Option<u32>,
    port_taken: impl FnOnce(),
) -> io::Result<(TcpStream, Instant)> {
    let chosen = source.filter(|s| s.port() != 0);
    let connected = match connect_from(target, source, sndbuf).await {
        Err((e, at_connect)) if chosen.is_some() && is_port_taken(&e, at_connect) => {
            port_taken();
            connect_from(target, chosen.map(|s| SocketAddr::new(s.ip(), 0)), sndbuf).await
        }
        connected => connected,
    };
    connected.map_err(|(e, _)| e)
}

/// Whether `e` says an explicitly bound port is in use: at bind (by a socket that does not
/// share it), or at connect (this 4-tuple).
fn is_port_taken(e: &io::Error, at_connect: bool) -> bool {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => !at_connect,
        Some(libc::EADDRNOTAVAIL) => at_connect,
        _ => false,
    }
}

/// Open a socket bound to `source` and connect it; fails with the error and whether it
/// was connect()'s (not the socket's set-up).
async fn connect_from(
    target: SocketAddr,
    source: Option<SocketAddr>,
    sndbuf: Option<u32>,
) -> Result<(TcpStream, Instant), (io::Error, bool)> {
    let socket = open_socket(target, source, sndbuf).map_err(|e| (e, false))?;
    let started = Instant::now();
    match socket.connect(target).await {
        Ok(stream) => {
            stream.set_nodelay(true).map_err(|e| (e, true))?;
            Ok((stream, started))
        }
        Err(e) => Err((e, true)),
    }
}

/// A socket ready to connect: buffer size and source address set.
fn open_socket(target: SocketAddr, source: Option<SocketAddr>, sndbuf: Option<u32>) -> io::Result<TcpSocket> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(bytes) = sndbuf {
        socket.set_send_buffer_size(bytes)?;
    }
    let Some(local) = source else { return Ok(socket) };
    // SO_REUSEADDR on every bound socket: a later bind() may share a port only with
    // sockets that set it too, the kernel's choices at connect and TIME_WAIT included.
    // Without it, a churn phase's TIME_WAIT ports refused the explicit ports of a
    // connect phase after it (EADDRINUSE). The kernel's own choice at connect ignores it.
    socket.set_reuseaddr(true)?;
    if local.port() == 0 {
        bind_at_connect(&socket, local)?;
    } else {
        // A port sockcap chose itself: the connect rate stays flat however full the
        // range is, where the kernel's own search slows past half of it.
        socket.bind(local)?;
    }
    Ok(socket)
}

/// Bind the address alone: the kernel picks the port at connect time, for the full
/// 4-tuple. Never bind(port 0) without IP_BIND_ADDRESS_NO_PORT, which would take a port
/// for every destination.
fn bind_at_connect(socket: &TcpSocket, local: SocketAddr) -> io::Result<()> {
    crate::socket::set_int_option(socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    socket.bind(local)
}

/// Write a short message completely (it almost always fits the socket buffer at once).
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
