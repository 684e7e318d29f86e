//! Socket census: count TCP sockets by state, filtered by port and address.
//!
//! A [`Prober`] holds a NETLINK_SOCK_DIAG socket and dumps the TCP sockets of its network
//! namespace, IPv4 and IPv6, every state included (TIME_WAIT sockets and SYN_RECV request
//! sockets too): in one walk of the kernel's socket tables where the kernel takes the
//! request for it, else one walk per family. The kernel does the filtering: the [`Filter`]
//! travels in the request (ports in the socket id, everything as `inet_diag` bytecode), so a
//! census of 20 sockets among a million moves 20 messages, not a million. Replies are walked
//! in place, reading only family, state, ports and addresses (module `sockdiag`; the socket
//! I/O is in `netlink`).
//!
//! When netlink is refused (no permission, no sock_diag support), the prober falls back to
//! /proc/net/tcp and /proc/net/tcp6 ([`parse_proc_net_tcp`]) and says so in
//! [`Prober::warning`]; [`Prober::proc_net`] asks for that backend directly.
//!
//! [`Prober::listening`] finds the listening sockets of a port with their inodes (a dump of
//! the LISTEN state alone, or [`parse_listening`] on the fallback), which is how
//! [`crate::process`] finds the processes behind a port.

mod netlink;
mod procnet;
mod sockdiag;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use self::procnet::{parse_listening, parse_proc_net_tcp};
use crate::state::{StateCounts, TcpState};

/// Which sockets to count. Every `Some` field must match; the kernel does the filtering
/// (ports and addresses travel in the sock_diag request).
///
/// An IPv4 address also matches the IPv4-mapped address (`::ffff:a.b.c.d`) of an IPv6
/// socket, as in `ss`; an IPv4-mapped address in the filter is taken as the IPv4 address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// The socket's own port: the listening port for a server-side census.
    pub local_port: Option<u16>,
    /// The peer's port: the target's port for a client-side census.
    pub remote_port: Option<u16>,
    /// The socket's own address.
    pub local_addr: Option<IpAddr>,
    /// The peer's address.
    pub remote_addr: Option<IpAddr>,
}

impl Filter {
    /// The sockets of a server listening on `port`: the listener and its connections.
    pub fn server(port: u16) -> Filter {
        Filter { local_port: Some(port), ..Filter::default() }
    }

    /// The client sockets connected (or connecting) to `port`.
    pub fn client(port: u16) -> Filter {
        Filter { remote_port: Some(port), ..Filter::default() }
    }

    /// Whether a socket with these ends passes the filter (what the kernel's bytecode
    /// decides for a sock_diag census; used as is by the /proc fallback).
    pub fn matches(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.local_port.is_none_or(|p| p == local.port())
            && self.remote_port.is_none_or(|p| p == remote.port())
            && self.local_addr.is_none_or(|a| addr_matches(a, local.ip()))
            && self.remote_addr.is_none_or(|a| addr_matches(a, remote.ip()))
    }

    /// The filter with IPv4-mapped addresses written as IPv4 addresses.
    fn canonical(&self) -> Filter {
        Filter {
            local_addr: self.local_addr.map(|a| a.to_canonical()),
            remote_addr: self.remote_addr.map(|a| a.to_canonical()),
            ..*self
        }
    }

    /// Whether IPv4 sockets can match: not when the filter names an IPv6 address.
    fn wants_ipv4(&self) -> bool {
        let f = self.canonical();
        !matches!(f.local_addr, Some(IpAddr::V6(_))) && !matches!(f.remote_addr, Some(IpAddr::V6(_)))
    }

    /// Which end of a socket [`Prober::census_with_peers`] groups by.
    fn peer_side(&self) -> Side {
        if self.local_port.is_some() {
            Side::Remote
        } else {
            Side::Local
        }
    }
}

/// The kernel's address condition: same family and equal, or an IPv4 filter address
/// against an IPv4-mapped IPv6 socket address.
fn addr_matches(filter: IpAddr, socket: IpAddr) -> bool {
    match (filter.to_canonical(), socket) {
        (IpAddr::V4(f), IpAddr::V4(s)) => f == s,
        (IpAddr::V4(f), IpAddr::V6(s)) => s.to_ipv4_mapped() == Some(f),
        (IpAddr::V6(f), IpAddr::V6(s)) => f == s,
        (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

/// One end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

/// Where a census came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// NETLINK_SOCK_DIAG dumps (IPv4 and IPv6).
    SockDiag,
    /// /proc/net/tcp and /proc/net/tcp6, used when netlink is refused.
    ProcNet,
}

/// How many matching sockets one remote (or local) address holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerCount {
    /// The address (IPv4-mapped IPv6 addresses are given as IPv4).
    pub addr: IpAddr,
    /// Matching sockets with this address at the grouped end, in any state.
    pub sockets: u64,
}

/// One census: counts by state, and optionally the addresses holding most sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Matching sockets by state.
    pub states: StateCounts,
    /// Top peers by socket count, largest first (empty unless asked for).
    pub peers: Vec<PeerCount>,
    /// Wall time the census took, dumps and counting included.
    pub elapsed: Duration,
}

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ListeningSocket {
    /// The address and port it listens on (an unspecified address listens on all).
    pub local: SocketAddr,
    /// Its inode: `INODE` in the `socket:[INODE]` links under /proc/PID/fd of the
    /// processes that hold it.
    pub inode: u64,
    /// Its accept queue's capacity: the backlog given to listen(2), capped by
    /// net.core.somaxconn (`None` from /proc/net/tcp, which does not show it).
    pub backlog: Option<u32>,
}

impl ListeningSocket {
    /// Whether a connection to `addr` reaches this listener: the same port, and the same
    /// address or a wildcard one. An IPv6 wildcard is taken to accept IPv4 connections
    /// too (Linux's default, `net.ipv6.bindv6only = 0`; an IPV6_V6ONLY listener does not).
    pub fn accepts(&self, addr: SocketAddr) -> bool {
        if self.local.port() != addr.port() {
            return false;
        }
        let (mine, theirs) = (self.local.ip().to_canonical(), addr.ip().to_canonical());
        match mine {
            IpAddr::V4(ip) if ip.is_unspecified() => theirs.is_ipv4(),
            IpAddr::V6(ip) if ip.is_unspecified() => true,
            _ => mine == theirs,
        }
    }
}

/// A reusable census taker: holds its netlink socket between censuses.
#[derive(Debug)]
pub struct Prober {
    backend: Backend,
    warning: Option<String>,
    /// The sock_diag socket; `None` with the /proc backend.
    diag: Option<netlink::SockDiag>,
}

/// Why a census could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CensusError {
    /// A /proc/net file could not be read.
    #[error("reading {path}: {source}")]
    Proc {
        /// The file.
        path: String,
        /// What reading it said.
        source: std::io::Error,
    },
    /// The sock_diag socket or the kernel reported an error other than a refusal
    /// (refusals switch the prober to /proc instead).
    #[error("sock_diag: {0}")]
    Netlink(std::io::Error),
    /// A sock_diag reply or a /proc/net line did not have the expected shape.
    #[error("census reply could not be parsed: {0}")]
    Parse(String),
}

/// The /proc files of the fallback, IPv4 first.
const PROC_NET_TCP: &str = "/proc/net/tcp";
const PROC_NET_TCP6: &str = "/proc/net/tcp6";

/// What a census accumulates: counts by state, and sockets by address when asked.
struct Tally {
    states: StateCounts,
    peers: Option<(Side, HashMap<IpAddr, u64>)>,
}

impl Tally {
    fn new(peers: Option<Side>) -> Tally {
        Tally { states: StateCounts::default(), peers: peers.map(|side| (side, HashMap::new())) }
    }

    /// Count one socket; `addr` is asked for only when peers are grouped.
    #[inline]
    fn add(&mut self, state: u8, addr: impl FnOnce(Side) -> IpAddr) {
        if let Some(state) = TcpState::from_kernel(state) {
            self.states.add(state);
        }
        if let Some((side, peers)) = &mut self.peers {
            let addr = addr(*side).to_canonical();
            if !addr.is_unspecified() {
                *peers.entry(addr).or_insert(0) += 1;
            }
        }
    }

    /// The `top` addresses holding most sockets, largest first (ties by address).
    fn top_peers(self, top: usize) -> Vec<PeerCount> {
        let Some((_, peers)) = self.peers else {
            return Vec::new();
        };
        let mut peers: Vec<PeerCount> = peers.into_iter().map(|(addr, sockets)| PeerCount { addr, sockets }).collect();
        peers.sort_unstable_by(|a, b| b.sockets.cmp(&a.sockets).then(a.addr.cmp(&b.addr)));
        peers.truncate(top);
        peers
    }
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

    /// The listening sockets on `port` (IPv4 and IPv6, any address), with their inodes.
    pub fn listening(&mut self, port: u16) -> Result<Vec<ListeningSocket>, CensusError> {
        if let Some(diag) = &mut self.diag {
            let mut found = Vec::new();
            let listener = |m: sockdiag::DiagMsg<'_>| {
                found.push(ListeningSocket { local: m.local(), inode: m.inode(), backlog: Some(m.wqueue()) })
            };
            match diag.dump_tcp_in(sockdiag::LISTEN_ONLY, &Filter::server(port), listener) {
                Ok(()) => return Ok(found),
                Err(netlink::DumpError::Io(e)) if netlink::is_refusal(&e) => *self = Prober::refused(&e),
                Err(netlink::DumpError::Io(e)) => return Err(CensusError::Netlink(e)),
                Err(netlink::DumpError::Malformed(what)) => return Err(CensusError::Parse(what.to_owned())),
            }
        }
        let mut found = Vec::new();
        for path in [PROC_NET_TCP, PROC_NET_TCP6] {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound && path == PROC_NET_TCP6 => continue,
                Err(source) => return Err(CensusError::Proc { path: path.to_owned(), source }),
            };
            found.extend(parse_listening(&text, port).map_err(|e| CensusError::Parse(e.to_string()))?);
        }
        Ok(found)
    }

    /// Count with the backend in use, falling back to /proc if netlink refuses the dump.
    fn tally(&mut self, filter: &Filter, peers: Option<Side>) -> Result<Tally, CensusError> {
        if let Some(diag) = &mut self.diag {
            let mut tally = Tally::new(peers);
            match sock_diag_census(diag, filter, &mut tally) {
                Ok(()) => return Ok(tally),
                Err(netlink::DumpError::Io(e)) if netlink::is_refusal(&e) => *self = Prober::refused(&e),
                Err(netlink::DumpError::Io(e)) => return Err(CensusError::Netlink(e)),
                Err(netlink::DumpError::Malformed(what)) => return Err(CensusError::Parse(what.to_owned())),
            }
        }
        let mut tally = Tally::new(peers);
        proc_net_census(filter, &mut tally)?;
        Ok(tally)
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

/// Stream /proc/net/tcp and /proc/net/tcp6 line by line (a missing tcp6 means no IPv6).
fn proc_net_census(filter: &Filter, tally: &mut Tally) -> Result<(), CensusError> {
    let paths: &[&str] = if filter.wants_ipv4() { &[PROC_NET_TCP, PROC_NET_TCP6] } else { &[PROC_NET_TCP6] };
    let mut line = Vec::with_capacity(256);
    for &path in paths {
        let proc_err = |source| CensusError::Proc { path: path.to_owned(), source };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == PROC_NET_TCP6 => continue,
            Err(e) => return Err(proc_err(e)),
        };
        let mut reader = BufReader::with_capacity(256 << 10, file);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(proc_err)? == 0 {
                break;
            }
            let entry = procnet::parse_line(&line).map_err(|e| CensusError::Parse(e.to_string()))?;
            let Some(e) = entry else { continue };
            if filter.matches(e.local, e.remote) {
                tally.add(e.state, |side| match side {
                    Side::Local => e.local.ip(),
                    Side::Remote => e.remote.ip(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use socket2::{Domain, Socket, Type};

    use super::*;

    /// Ports below the ephemeral range (where connect() never picks one), from a block
    /// that depends on the process id.
    fn private_ports() -> impl Iterator<Item = u16> {
        let start = 10_000 + (std::process::id() % 1_000) as u16 * 20;
        start..32_000
    }

    /// A socket bound to the next port of `ports` that is free on `addr`. Without
    /// SO_REUSEADDR, bind fails while any socket (a TIME_WAIT one included) holds it.
    fn bind_free(addr: IpAddr, ports: &mut impl Iterator<Item = u16>) -> (Socket, u16) {
        ports
            .find_map(|port| {
                let at = SocketAddr::new(addr, port);
                let socket = Socket::new(Domain::for_address(at), Type::STREAM, None).unwrap();
                socket.bind(&at.into()).ok().map(|()| (socket, port))
            })
            .expect("a free port below the ephemeral range")
    }

    fn connect_from(addr: IpAddr, ports: &mut impl Iterator<Item = u16>, to: SocketAddr) -> TcpStream {
        let (socket, _) = bind_free(addr, ports);
        socket.connect(&to.into()).unwrap();
        socket.into()
    }

    /// Loopback sockets on one port: IPv4 (listener with TCP_DEFER_ACCEPT): LISTEN,
    /// ESTABLISHED, TIME_WAIT (server closed first) and a SYN_RECV request socket (its
    /// client sent no data); IPv6: LISTEN and ESTABLISHED. The port and what holds them.
    ///
    /// Every port is private (see [`private_ports`]) and used once: a port from bind(0)
    /// may be shared with someone's TIME_WAIT socket, and a reused client port would let
    /// its SYN recycle the server's TIME_WAIT socket.
    fn sockets_on_one_port() -> (u16, Vec<TcpListener>, Vec<TcpStream>) {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut ports = private_ports();
        let mut diag = netlink::SockDiag::open().unwrap();
        let (listener, listener6, port) = loop {
            let (socket, port) = bind_free(lo, &mut ports);
            let at6 = SocketAddr::new(lo6, port);
            let socket6 = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
            if socket6.bind(&at6.into()).is_err() {
                continue;
            }
            let mut others = 0;
            for filter in [Filter::server(port), Filter::client(port)] {
                diag.dump_tcp(&filter, |_| others += 1).unwrap();
            }
            if others == 0 {
                socket.listen(128).unwrap();
                socket6.listen(128).unwrap();
                break (TcpListener::from(socket), TcpListener::from(socket6), port);
            }
        };
        let secs: libc::c_int = 60;
        // SAFETY: a valid socket and a c_int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let to = SocketAddr::new(lo, port);
        let mut established = connect_from(lo, &mut ports, to);
        established.write_all(b"x").unwrap();
        let (server_est, _) = listener.accept().unwrap();
        let mut closing = connect_from(lo, &mut ports, to);
        closing.write_all(b"x").unwrap();
        let (mut server_closing, _) = listener.accept().unwrap();
        server_closing.read_exact(&mut [0]).unwrap(); // unread data would make close() send RST
        server_closing.shutdown(Shutdown::Both).unwrap();
        drop(server_closing);
        let mut rest = Vec::new();
        closing.read_to_end(&mut rest).unwrap(); // the server's FIN arrived
        drop(closing); // LAST_ACK here, TIME_WAIT on the server side
        let syn_recv = connect_from(lo, &mut ports, to);

        let client6 = connect_from(lo6, &mut ports, SocketAddr::new(lo6, port));
        let (server6, _) = listener6.accept().unwrap();
        (port, vec![listener, listener6], vec![established, server_est, syn_recv, client6, server6])
    }

    /// Print the sock_diag replies and /proc/net/tcp{,6} lines that the golden tests of
    /// `sockdiag` and `procnet` hold, for [`sockets_on_one_port`] dumped by local port in one
    /// walk and per family:
    /// `cargo test -p sockcap-probe record_golden_replies -- --ignored --nocapture`.
    #[test]
    #[ignore = "records golden bytes from the live kernel"]
    fn record_golden_replies() {
        let (port, _listeners, _streams) = sockets_on_one_port();
        let mut diag = netlink::SockDiag::open().unwrap();
        use sockdiag::Dump;
        for dump in [Dump::BothFamilies, Dump::Family(libc::AF_INET as u8), Dump::Family(libc::AF_INET6 as u8)] {
            let datagrams = diag.dump_datagrams(dump, &Filter::server(port)).unwrap();
            println!("// {dump:?}, Filter::server({port}): {} datagrams", datagrams.len());
            let bytes: Vec<u8> = datagrams.concat();
            for chunk in bytes.chunks(16) {
                let line: Vec<String> = chunk.iter().map(|b| format!("0x{b:02x},")).collect();
                println!("    {}", line.join(" "));
            }
        }
        for path in [PROC_NET_TCP, PROC_NET_TCP6] {
            println!("// {path}, lines with port {port} ({port:04X})");
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines().filter(|l| l.contains("  sl ") || l.contains(&format!(":{port:04X} "))) {
                println!("{line}");
            }
        }
    }

    /// Both sock_diag requests and the /proc fallback count the same sockets, TIME_WAIT
    /// and SYN_RECV request sockets included.
    #[test]
    fn one_walk_per_family_and_proc_agree() {
        let (port, _listeners, _streams) = sockets_on_one_port();
        let mut diag = netlink::SockDiag::open().unwrap();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let filters = [
            Filter::server(port),
            Filter::client(port),
            Filter { local_addr: Some(lo), ..Filter::server(port) },
            Filter { local_addr: Some(Ipv6Addr::LOCALHOST.into()), ..Filter::server(port) },
        ];
        for filter in &filters {
            let mut one_walk = Tally::new(None);
            diag.dump_tcp(filter, |m| one_walk.add(m.state(), |_| lo)).unwrap();
            let mut per_family = Tally::new(None);
            diag.dump_per_family(sockdiag::ALL_STATES, filter, |m| per_family.add(m.state(), |_| lo)).unwrap();
            let mut proc = Tally::new(None);
            proc_net_census(filter, &mut proc).unwrap();
            assert_eq!(one_walk.states, per_family.states, "{filter:?}");
            assert_eq!(one_walk.states, proc.states, "{filter:?}");
        }
        let mut count = |filter: &Filter| {
            let mut t = Tally::new(None);
            diag.dump_tcp(filter, |m| t.add(m.state(), |_| lo)).unwrap();
            t.states
        };
        let server = count(&filters[0]);
        use TcpState::*;
        for (state, n) in [(Listen, 2), (Established, 2), (TimeWait, 1), (SynRecv, 1)] {
            assert_eq!(server.get(state), n, "{state:?}");
        }
        assert_eq!(server.total(), 6);
        assert_eq!(count(&filters[1]).get(Established), 3);
        assert_eq!(count(&filters[2]).total(), 4);
        assert_eq!(count(&filters[3]).total(), 2);
    }

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

    #[test]
    fn listeners_accept_their_address_or_any() {
        let at = |s: &str| ListeningSocket { local: s.parse().unwrap(), inode: 1, backlog: None };
        let to = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(at("127.0.0.1:1883").accepts(to("127.0.0.1:1883")));
        assert!(!at("127.0.0.1:1883").accepts(to("127.0.0.2:1883")));
        assert!(!at("127.0.0.1:1883").accepts(to("127.0.0.1:1884")));
        assert!(at("0.0.0.0:1883").accepts(to("127.0.0.2:1883")));
        assert!(!at("0.0.0.0:1883").accepts(to("[::1]:1883")));
        assert!(at("[::]:1883").accepts(to("127.0.0.1:1883")));
        assert!(at("[::]:1883").accepts(to("[::1]:1883")));
        assert!(at("[::ffff:127.0.0.1]:1883").accepts(to("127.0.0.1:1883")));
        assert!(!at("[::1]:1883").accepts(to("127.0.0.1:1883")));
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

    #[test]
    fn top_peers_are_largest_first() {
        let mut tally = Tally::new(Some(Side::Remote));
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let mapped_b = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 3).to_ipv6_mapped());
        for addr in [a, b, mapped_b, IpAddr::V4(Ipv4Addr::UNSPECIFIED)] {
            tally.add(TcpState::Established as u8, |_| addr);
        }
        assert_eq!(tally.states.get(TcpState::Established), 4);
        assert_eq!(tally.top_peers(5), [PeerCount { addr: b, sockets: 2 }, PeerCount { addr: a, sockets: 1 }]);
    }
}
