//! Socket operations that tokio and socket2 do not offer, shared by the client engine,
//! the embedded target and their tests: integer socket options by number
//! (IP_BIND_ADDRESS_NO_PORT, TCP_DEFER_ACCEPT), the count of unsent bytes, and filling
//! a send buffer until the peer's window is closed; peeking at, taking and discarding
//! bytes from the receive queue, its length and whether the peer has shut down its end;
//! and whether an address is this machine's.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// A listen backlog as large as the kernel allows: it is clamped to
/// `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 65_535;

/// True when `ip` belongs to this machine (loopback, or bindable here).
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// setsockopt(level, name) with an int value.
pub fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is the length passed; the descriptor
    // is open for as long as `socket` is borrowed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes in the send queue that were never sent (SIOCOUTQNSD).
pub fn unsent_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int through the pointer, which is valid.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCOUTQNSD, &mut bytes) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(bytes).unwrap_or(0))
}

/// Bytes in the receive queue not yet read (SIOCINQ).
pub fn queued_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCINQ (FIONREAD) writes one int through the pointer, which is valid.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut bytes) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(bytes).unwrap_or(0))
}

/// recv() without blocking; with `peek`, the bytes stay in the receive queue.
pub fn receive(socket: &impl AsRawFd, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which is valid for them.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Take up to `max` bytes from a TCP socket's receive queue and throw them away, without
/// blocking and without copying them anywhere (MSG_TRUNC: for TCP the kernel discards the
/// data, so no buffer is needed). Returns the bytes taken; 0 means the peer's FIN: the
/// queue is empty and will stay so.
pub fn discard(socket: &impl AsRawFd, max: usize) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: with MSG_TRUNC, TCP copies nothing to the buffer: a null pointer is never
    // written through (were it, the kernel would fail with EFAULT, not write).
    let n = unsafe { libc::recv(socket.as_raw_fd(), std::ptr::null_mut(), max, flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether the peer has shut down its sending side (its FIN arrived: POLLRDHUP), even
/// while bytes it sent before are still queued.
pub fn peer_shut_down(socket: &impl AsRawFd) -> bool {
    let mut fd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, and a zero timeout: poll() returns at once.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// Write zeros until the socket takes no more *and* some of it is unsent: the peer's
/// receive window is closed, so a FIN queued next waits behind the data. Bounded in bytes
/// and time, in case the peer reads after all. Returns the bytes written.
pub async fn fill_send_buffer(stream: &TcpStream) -> usize {
    const MAX_FILL: usize = 64 << 20;
    // Static, not on the stack: a local array would sit in every close future (and every
    // connecting one, which may close at once) across the await below.
    static ZEROS: [u8; 4096] = [0; 4096];
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while written < MAX_FILL {
        match stream.try_write(&ZEROS) {
            Ok(n) if n > 0 => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Full for now; done if the kernel holds unsent bytes, else it is still
                // moving data into the peer's receive buffer.
                if unsent_bytes(stream).unwrap_or(1) > 0 {
                    break;
                }
                if timeout_at(deadline, stream.writable()).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    written
}
