//! The NETLINK_SOCK_DIAG socket a [`Prober`](super::Prober) keeps between censuses, and the
//! dump loop that feeds received datagrams to the pure parser in [`sockdiag`](super::sockdiag).

use std::io;

use netlink_packet_sock_diag::{AF_INET, AF_INET6};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::filter::Filter;
use super::sockdiag::{self, DiagMsg, Dump, Progress, ReplyError};

/// Receive buffer for one datagram. The kernel sizes dump datagrams from the reader's
/// buffer, up to 32 KiB (about 280 sockets); `MSG_TRUNC` tells us if one is ever larger.
const RECV_BUF: usize = 64 << 10;
/// `SO_RCVBUF` asked for (best effort): room for the kernel to queue the next datagram
/// while we parse one.
const SO_RCVBUF_WANTED: usize = 1 << 20;

/// Why a dump failed.
#[derive(Debug)]
pub(crate) enum DumpError {
    /// A system call or the kernel said no; carries the errno.
    Io(io::Error),
    /// The reply could not be parsed.
    Malformed(&'static str),
}

/// Whether an errno means "sock_diag is not for you here".
pub(crate) fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::ENOENT)
    )
}

/// Whether an errno means "no such request here": the kernel does not take the
/// compatibility request (no handler: EOPNOTSUPP; an unknown type: EINVAL).
fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOENT))
}

/// An open NETLINK_SOCK_DIAG socket with its buffers.
pub(crate) struct SockDiag {
    /// `None` after a failed dump: the next dump opens a fresh socket, so no half-read
    /// reply of the failed one is left in the way.
    socket: Option<Socket>,
    /// Whether the kernel takes the one-walk compatibility request (until it says no).
    both_families: bool,
    request: Vec<u8>,
    buf: Vec<u8>,
    seq: u32,
    /// The attributes requests ask for (`idiag_ext`); 0 for a census.
    ext: u8,
}

impl std::fmt::Debug for SockDiag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockDiag")
            .field("open", &self.socket.is_some())
            .field("both_families", &self.both_families)
            .field("seq", &self.seq)
            .finish()
    }
}

impl SockDiag {
    /// Open and bind the socket.
    pub(crate) fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            socket: Some(open_socket()?),
            both_families: true,
            request: Vec::with_capacity(128),
            buf: vec![0; RECV_BUF],
            seq: 0,
            ext: 0,
        })
    }

    /// Dump the IPv4 and IPv6 TCP sockets that match `filter`, in every state, calling
    /// `visit` for each: in one walk if the kernel takes the compatibility request, else one
    /// per family.
    pub(crate) fn dump_tcp(&mut self, filter: &Filter, visit: impl FnMut(DiagMsg<'_>)) -> Result<(), DumpError> {
        self.dump_tcp_in(sockdiag::ALL_STATES, filter, visit)
    }

    /// [`SockDiag::dump_tcp`] with the attributes in `ext` (an `idiag_ext` mask) in each reply.
    pub(crate) fn dump_tcp_with(
        &mut self,
        ext: u8,
        filter: &Filter,
        visit: impl FnMut(DiagMsg<'_>),
    ) -> Result<(), DumpError> {
        self.ext = ext;
        let dumped = self.dump_tcp_in(sockdiag::ALL_STATES, filter, visit);
        self.ext = 0;
        dumped
    }

    /// A socket that dumps one family at a time, as when the kernel refuses the
    /// compatibility request (to check both ways against each other).
    #[cfg(test)]
    pub(crate) fn open_per_family() -> io::Result<SockDiag> {
        Ok(SockDiag { both_families: false, ..SockDiag::open()? })
    }

    /// [`SockDiag::dump_tcp`] for the sockets in `states` only (a mask of `1 << state`).
    pub(crate) fn dump_tcp_in(
        &mut self,
        states: u32,
        filter: &Filter,
        mut visit: impl FnMut(DiagMsg<'_>),
    ) -> Result<(), DumpError> {
        if self.both_families {
            let mut seen = false;
            match self.dump(Dump::BothFamilies, states, filter, |m| {
                seen = true;
                visit(m)
            }) {
                Err(DumpError::Io(e)) if !seen && is_unsupported(&e) => self.both_families = false,
                other => return other,
            }
        }
        // One `SOCK_DIAG_BY_FAMILY` dump per family; IPv4 is skipped when the filter names
        // an IPv6 address (IPv6 holds IPv4-mapped sockets too, so it is always asked).
        let families: &[u8] = if filter.wants_ipv4() { &[AF_INET, AF_INET6] } else { &[AF_INET6] };
        for &family in families {
            self.dump(Dump::Family(family), states, filter, &mut visit)?;
        }
        Ok(())
    }

    /// One dump, calling `visit` for each socket.
    fn dump(
        &mut self,
        dump: Dump,
        states: u32,
        filter: &Filter,
        mut visit: impl FnMut(DiagMsg<'_>),
    ) -> Result<(), DumpError> {
        self.exchange(dump, states, filter, |datagram, seq| {
            sockdiag::parse_reply(datagram, seq, &mut visit).map_err(|e| match e {
                ReplyError::Kernel(errno) => DumpError::Io(io::Error::from_raw_os_error(errno)),
                ReplyError::Malformed(what) => DumpError::Malformed(what),
            })
        })
    }

    /// The datagrams of one dump, as received (to record golden replies for tests).
    #[cfg(test)]
    pub(crate) fn dump_datagrams(&mut self, dump: Dump, filter: &Filter) -> Result<Vec<Vec<u8>>, DumpError> {
        let mut datagrams = Vec::new();
        self.exchange(dump, sockdiag::ALL_STATES, filter, |datagram, seq| {
            datagrams.push(datagram.to_vec());
            sockdiag::parse_reply(datagram, seq, |_| {}).map_err(|_| DumpError::Malformed("error reply"))
        })?;
        Ok(datagrams)
    }

    /// Send one dump request and hand each received datagram, with the request's sequence
    /// number, to `on_datagram` until it reports the end. After a failure the socket is dropped: the next dump opens a fresh
    /// one, so no half-read reply of the failed one is left in the way.
    fn exchange(
        &mut self,
        dump: Dump,
        states: u32,
        filter: &Filter,
        on_datagram: impl FnMut(&[u8], u32) -> Result<Progress, DumpError>,
    ) -> Result<(), DumpError> {
        let result = self.try_exchange(dump, states, filter, on_datagram);
        if result.is_err() {
            self.socket = None;
        }
        result
    }

    fn try_exchange(
        &mut self,
        dump: Dump,
        states: u32,
        filter: &Filter,
        mut on_datagram: impl FnMut(&[u8], u32) -> Result<Progress, DumpError>,
    ) -> Result<(), DumpError> {
        if self.socket.is_none() {
            self.socket = Some(open_socket().map_err(DumpError::Io)?);
        }
        let socket = self.socket.as_ref().expect("opened above");
        self.seq = self.seq.wrapping_add(1);
        self.request.clear();
        sockdiag::dump_request_ext(dump, filter, states, self.ext, self.seq, &mut self.request);
        retry_eintr(|| socket.send(&self.request, 0)).map_err(DumpError::Io)?;

        loop {
            let mut window = &mut self.buf[..];
            let n = retry_eintr(|| socket.recv(&mut window, libc::MSG_TRUNC)).map_err(DumpError::Io)?;
            if n > self.buf.len() {
                return Err(DumpError::Malformed("a sock_diag datagram was larger than the receive buffer"));
            }
            if on_datagram(&self.buf[..n], self.seq)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

fn open_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    // Best effort: a smaller buffer only means more, shorter waits.
    let _ = socket.set_rx_buf_sz(SO_RCVBUF_WANTED);
    Ok(socket)
}

fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
