//! The TCP transport, the client side: a socket set up (send buffer, source address
//! and port) and connected, with the fallback to the kernel's port when the one sockcap
//! chose is taken; and writing a short message whole.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::error::{DialError, DialStep};

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
) -> Result<(TcpStream, Instant), DialError> {
    let chosen = source.filter(|s| s.port() != 0);
    match connect_from(target, source, sndbuf).await {
        Err(e) if chosen.is_some() && is_port_taken(&e) => {
            port_taken();
            connect_from(target, chosen.map(|s| SocketAddr::new(s.ip(), 0)), sndbuf).await
        }
        connected => connected,
    }
}

/// Whether `e` says an explicitly bound port is in use: at bind (by a socket that does not
/// share it), or at connect (this 4-tuple).
fn is_port_taken(e: &DialError) -> bool {
    match e.error.raw_os_error() {
        Some(libc::EADDRINUSE) => e.step == DialStep::Bind,
        Some(libc::EADDRNOTAVAIL) => e.step == DialStep::Connect,
        _ => false,
    }
}

/// Open a socket bound to `source` and connect it.
async fn connect_from(
    target: SocketAddr,
    source: Option<SocketAddr>,
    sndbuf: Option<u32>,
) -> Result<(TcpStream, Instant), DialError> {
    let socket = open_socket(target, source, sndbuf)?;
    let started = Instant::now();
    let at_connect = |e| DialError::new(DialStep::Connect, e);
    let stream = socket.connect(target).await.map_err(at_connect)?;
    stream.set_nodelay(true).map_err(at_connect)?;
    Ok((stream, started))
}

/// A socket ready to connect: buffer size and source address set.
fn open_socket(target: SocketAddr, source: Option<SocketAddr>, sndbuf: Option<u32>) -> Result<TcpSocket, DialError> {
    let at_socket = |e| DialError::new(DialStep::Socket, e);
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(at_socket)?;
    if let Some(bytes) = sndbuf {
        socket.set_send_buffer_size(bytes).map_err(at_socket)?;
    }
    let Some(local) = source else { return Ok(socket) };
    // SO_REUSEADDR on every bound socket: a later bind() may share a port only with
    // sockets that set it too, the kernel's choices at connect and TIME_WAIT included.
    // Without it, a churn phase's TIME_WAIT ports refused the explicit ports of a
    // connect phase after it (EADDRINUSE). The kernel's own choice at connect ignores it.
    socket.set_reuseaddr(true).map_err(at_socket)?;
    let bound = if local.port() == 0 {
        bind_at_connect(&socket, local)
    } else {
        // A port sockcap chose itself: the connect rate stays flat however full the
        // range is, where the kernel's own search slows past half of it.
        socket.bind(local)
    };
    bound.map_err(|e| DialError::new(DialStep::Bind, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source address on no interface fails at bind, before any packet: the step says
    /// so. (With net.ipv4.ip_nonlocal_bind = 1 bind would take it: this test needs 0.)
    #[tokio::test]
    async fn a_foreign_source_fails_at_bind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let foreign: SocketAddr = "192.0.2.1:0".parse().unwrap();
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind").unwrap_or_default();
        assert_eq!(nonlocal.trim(), "0", "this test needs net.ipv4.ip_nonlocal_bind = 0");
        let err = dial(target, Some(foreign), None, || panic!("not a taken port")).await.unwrap_err();
        assert_eq!((err.step, err.error.raw_os_error()), (DialStep::Bind, Some(libc::EADDRNOTAVAIL)), "{err}");
        assert!(err.to_string().starts_with("bind: "), "{err}");
    }
}
