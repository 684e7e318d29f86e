//! Socket operations that tokio and socket2 do not offer, shared by the client engine,
//! the embedded target and their tests: integer socket options by number
//! (IP_BIND_ADDRESS_NO_PORT, TCP_DEFER_ACCEPT), the count of unsent bytes, and filling
//! a send buffer until the peer's window is closed; peeking at, taking and discarding
//! bytes from the receive queue, its length and whether the peer has shut down its end;
//! and whether an address is this machine's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// A listen backlog as large as the kernel allows: it is clamped to
/// `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 65_535;

/// True when `ip` belongs to this machine, in the network namespace this process is in:
/// loopback, unspecified, or an address of one of its interfaces (getifaddrs).
///
/// Not "bindable here": with `net.ipv4.ip_nonlocal_bind = 1` (or IP_FREEBIND) bind()
/// takes any address, so a successful bind does not show the address is ours.
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || interface_addresses().is_ok_and(|all| all.contains(&ip))
}

/// The IPv4 and IPv6 addresses of this namespace's interfaces.
pub fn interface_addresses() -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head through the pointer, which is valid; the list
    // is freed below with freeifaddrs, once, after the last read.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs made, not freed yet.
        let entry = unsafe { &*at };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its full type.
            match i32::from(unsafe { (*entry.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: an AF_INET address is a sockaddr_in.
                    let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    // SAFETY: an AF_INET6 address is a sockaddr_in6.
                    let sin6 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in6>() };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: the list from getifaddrs above, freed once; nothing refers to it after.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machines_addresses_are_local_and_a_documentation_address_is_not() {
        let all = interface_addresses().unwrap();
        assert!(all.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{all:?}");
        for ip in &all {
            assert!(is_local(*ip), "{ip}");
        }
        assert!(is_local("127.0.3.4".parse().unwrap()) && is_local("::1".parse().unwrap()));
        // TEST-NET-1 and the IPv6 documentation prefix: on no machine's interfaces.
        assert!(!is_local("192.0.2.1".parse().unwrap()));
        assert!(!is_local("2001:db8::1".parse().unwrap()));
    }
}
