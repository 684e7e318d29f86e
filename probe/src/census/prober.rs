//! The [`Prober`]: a census taker that keeps its sock_diag socket between censuses and
//! falls back to /proc/net/tcp{,6} when netlink is refused.

use std::io;
use std::time::Instant;

use super::error::CensusError;
use super::fallback::{self, PROC_NET_TCP, PROC_NET_TCP6};
use super::filter::{Filter, Side};
use super::listening::ListeningSocket;
use super::memory::SocketMemory;
use super::netlink;
use super::sockdiag;
use super::tally::{Census, Tally};
use crate::state::StateCounts;

/// Where a census came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// NETLINK_SOCK_DIAG dumps (IPv4 and IPv6).
    SockDiag,
    /// /proc/net/tcp and /proc/net/tcp6, used when netlink is refused.
    ProcNet,
}

/// A reusable census taker: holds its netlink socket between censuses.
#[derive(Debug)]
pub struct Prober {
    backend: Backend,
    warning: Option<String>,
    /// The sock_diag socket; `None` with the /proc backend.
    diag: Option<netlink::SockDiag>,
}

impl Prober {
    /// Open a sock_diag socket, or fall back to /proc/net/tcp{,6} with a warning
    /// (see [`Prober::warning`]) when netlink is refused.
    pub fn new() -> Prober {
        match netlink::SockDiag::open() {
            Ok(diag) => Prober { backend: Backend::SockDiag, warning: None, diag: Some(diag) },
            Err(e) => Prober::refused(&e),
        }
    }

    /// A prober that reads /proc/net/tcp{,6} without trying netlink (no warning is set:
    /// the caller chose it). Slower at large socket counts.
    pub fn proc_net() -> Prober {
        Prober { backend: Backend::ProcNet, warning: None, diag: None }
    }

    /// The /proc fallback after netlink said `e`.
    fn refused(e: &io::Error) -> Prober {
        Prober {
            backend: Backend::ProcNet,
            warning: Some(format!(
                "sock_diag netlink was refused ({e}); counting sockets from {PROC_NET_TCP} and \
                 {PROC_NET_TCP6} instead, which is several times slower at large socket counts"
            )),
            diag: None,
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why the fallback backend is in use, if it is.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Count matching sockets by state (IPv4 and IPv6).
    pub fn census(&mut self, filter: &Filter) -> Result<StateCounts, CensusError> {
        Ok(self.tally(filter, None)?.states)
    }

    /// Count matching sockets by state, and the `top` addresses holding most of them:
    /// remote addresses when the filter names a local port, local addresses otherwise.
    /// Sockets without an address at that end (a listener's remote end, a wildcard
    /// listener's local end) are counted by state but not grouped.
    pub fn census_with_peers(&mut self, filter: &Filter, top: usize) -> Result<Census, CensusError> {
        let started = Instant::now();
        let tally = self.tally(filter, Some(filter.peer_side()))?;
        let states = tally.states;
        let peers = tally.top_peers(top);
        Ok(Census { states, peers, elapsed: started.elapsed() })
    }

    /// The kernel memory of the matching sockets (sock_diag's `INET_DIAG_SKMEMINFO`);
    /// an error with the /proc backend, which does not show it.
    pub fn memory(&mut self, filter: &Filter) -> Result<SocketMemory, CensusError> {
        let dumped = self.sock_diag_dump(|diag| {
            let mut memory = SocketMemory::default();
            diag.dump_tcp_with(sockdiag::EXT_SKMEMINFO, filter, |m| memory.visit(m)).map(|()| memory)
        })?;
        dumped.ok_or_else(|| {
            CensusError::Parse("socket memory needs sock_diag, and the /proc/net/tcp fallback is in use".to_string())
        })
    }

    /// The listening sockets on `port` (IPv4 and IPv6, any address), with their inodes.
    pub fn listening(&mut self, port: u16) -> Result<Vec<ListeningSocket>, CensusError> {
        let dumped = self.sock_diag_dump(|diag| {
            let mut found = Vec::new();
            let listener = |m: sockdiag::DiagMsg<'_>| {
                found.push(ListeningSocket { local: m.local(), inode: m.inode(), backlog: Some(m.wqueue()) })
            };
            diag.dump_tcp_in(sockdiag::LISTEN_ONLY, &Filter::server(port), listener).map(|()| found)
        })?;
        match dumped {
            Some(found) => Ok(found),
            None => fallback::listening(port),
        }
    }

    /// Count with the backend in use, falling back to /proc if netlink refuses the dump.
    fn tally(&mut self, filter: &Filter, peers: Option<Side>) -> Result<Tally, CensusError> {
        let dumped = self.sock_diag_dump(|diag| {
            let mut tally = Tally::new(peers);
            sock_diag_census(diag, filter, &mut tally).map(|()| tally)
        })?;
        if let Some(tally) = dumped {
            return Ok(tally);
        }
        let mut tally = Tally::new(peers);
        fallback::proc_net_census(filter, &mut tally)?;
        Ok(tally)
    }

    /// Run `dump` on the sock_diag socket. `None` with the /proc backend, or when netlink
    /// refuses the dump: the prober then switches to /proc ([`Prober::refused`]).
    fn sock_diag_dump<T>(
        &mut self,
        dump: impl FnOnce(&mut netlink::SockDiag) -> Result<T, netlink::DumpError>,
    ) -> Result<Option<T>, CensusError> {
        let Some(diag) = &mut self.diag else { return Ok(None) };
        match dump(diag) {
            Ok(dumped) => Ok(Some(dumped)),
            Err(netlink::DumpError::Io(e)) if netlink::is_refusal(&e) => {
                *self = Prober::refused(&e);
                Ok(None)
            }
            Err(netlink::DumpError::Io(e)) => Err(CensusError::Netlink(e)),
            Err(netlink::DumpError::Malformed(what)) => Err(CensusError::Parse(what.to_owned())),
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}

/// The kernel filters; a debug build checks that it did.
fn sock_diag_census(
    diag: &mut netlink::SockDiag,
    filter: &Filter,
    tally: &mut Tally,
) -> Result<(), netlink::DumpError> {
    diag.dump_tcp(filter, |msg| {
        debug_assert!(
            filter.matches(msg.local(), msg.remote()),
            "the kernel's sock_diag filter let through {msg:?} for {filter:?}"
        );
        tally.add(msg.state(), |side| match side {
            Side::Local => msg.local_addr(),
            Side::Remote => msg.remote_addr(),
        })
    })
}

/// For the fuzz target `sock_diag` (`fuzz/`): one received sock_diag datagram, walked as
/// a dump numbered as its first message is (every socket counted as a census counts it,
/// peers grouped as `filter` groups them; each also read as [`Prober::listening`] reads
/// it): the census and the listening sockets, or the reply's error.
#[doc(hidden)]
pub fn census_of_datagram(datagram: &[u8], filter: &Filter) -> Result<(Census, Vec<ListeningSocket>), String> {
    let seq = datagram.get(8..12).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let (mut tally, mut listening) = (Tally::new(Some(filter.peer_side())), Vec::new());
    sockdiag::parse_reply(datagram, seq, |msg| {
        tally.add(msg.state(), |side| match side {
            Side::Local => msg.local_addr(),
            Side::Remote => msg.remote_addr(),
        });
        if filter.matches(msg.local(), msg.remote()) {
            listening.push(ListeningSocket { local: msg.local(), inode: msg.inode(), backlog: Some(msg.wqueue()) });
        }
    })
    .map_err(|e| format!("{e:?}"))?;
    let states = tally.states;
    let peers = tally.top_peers(10);
    Ok((Census { states, peers, elapsed: Default::default() }, listening))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::os::fd::AsRawFd;

    use socket2::{Domain, Socket, Type};

    use super::*;

    #[test]
    fn a_refused_netlink_falls_back_with_a_warning() {
        let prober = Prober::refused(&io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(prober.backend(), Backend::ProcNet);
        let warning = prober.warning().unwrap();
        assert!(
            warning.contains("refused") && warning.contains("/proc/net/tcp") && warning.contains("slower"),
            "{warning}"
        );
        assert!(netlink::is_refusal(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(netlink::is_refusal(&io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)));
        assert!(!netlink::is_refusal(&io::Error::from_raw_os_error(libc::ENOBUFS)));
        assert_eq!(Prober::proc_net().warning(), None);
    }

    /// A listener of this process is found on its port with the inode /proc shows, and
    /// (through sock_diag) its backlog.
    #[test]
    fn listening_sockets_carry_their_inode() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).unwrap();
        socket.listen(37).unwrap();
        let listener = TcpListener::from(socket);
        let port = listener.local_addr().unwrap().port();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        for (mut prober, backlog) in [(Prober::new(), Some(37)), (Prober::proc_net(), None)] {
            let found = prober.listening(port).unwrap();
            assert_eq!(found.len(), 1, "{:?}: {found:?}", prober.backend());
            assert_eq!(found[0].local, listener.local_addr().unwrap());
            assert_eq!(link.to_str().unwrap(), format!("socket:[{}]", found[0].inode));
            assert_eq!(found[0].backlog, backlog);
        }
    }

    /// Bytes a server has not read are in its socket's memory; the client's socket is
    /// counted on its side.
    #[test]
    fn memory_counts_unread_bytes() {
        use std::io::Write;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.write_all(&[7; 3000]).unwrap();
        let mut prober = Prober::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let server = loop {
            let m = prober.memory(&Filter::server(port)).unwrap();
            if m.buffer_bytes >= 3000 || std::time::Instant::now() > until {
                break m;
            }
        };
        // The listener and the accepted socket.
        assert_eq!(server.sockets(), 2, "{server:?}");
        assert!(server.buffer_bytes >= 3000, "{server:?}");
        assert_eq!(prober.memory(&Filter::client(port)).unwrap().sockets(), 1);
        assert!(Prober::proc_net().memory(&Filter::server(port)).is_err());
    }
}
