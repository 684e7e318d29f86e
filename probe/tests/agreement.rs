//! The census agrees with `ss` and with the numbers the test made.
//!
//! The test opens its own loopback sockets in every state a load test leaves behind
//! (ESTABLISHED, TIME_WAIT on either side, FIN_WAIT2 / CLOSE_WAIT on either side, LISTEN,
//! and SYN_RECV request sockets through a TCP_DEFER_ACCEPT listener), over IPv4 from two
//! source addresses and over IPv6. It then compares, for client-side and server-side
//! filters with and without addresses:
//! - the sock_diag census with the sockets the test knows it made,
//! - `ss -Htan '<same filter>'` counted by state with the sock_diag census,
//! - the /proc/net/tcp{,6} census with the sock_diag census.
//!
//! Only the test's own ports are looked at, so other sockets on the machine do not matter.
//! Needs `ss` (iproute2).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use probe::{Backend, Filter, PeerCount, Prober, StateCounts, TcpState};
use socket2::{Domain, Socket, Type};

const LO1: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// How a test connection ends up, named by what each side did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Both ends open: ESTABLISHED / ESTABLISHED.
    Open,
    /// The client closed first, then the server: client TIME_WAIT, server gone.
    ClientClosed,
    /// The client shut down its sending side: client FIN_WAIT2, server CLOSE_WAIT.
    ClientHalfClosed,
    /// The server closed first, then the client: server TIME_WAIT, client gone.
    ServerClosed,
    /// The server closed, the client did not: server FIN_WAIT2, client CLOSE_WAIT.
    ServerHalfClosed,
    /// The client sent nothing to a TCP_DEFER_ACCEPT listener: client ESTABLISHED,
    /// server a SYN_RECV request socket.
    Quiet,
}

impl Fate {
    /// (client state, server state) once the connection has settled.
    fn states(self) -> (Option<TcpState>, Option<TcpState>) {
        use TcpState::*;
        match self {
            Fate::Open => (Some(Established), Some(Established)),
            Fate::ClientClosed => (Some(TimeWait), None),
            Fate::ClientHalfClosed => (Some(FinWait2), Some(CloseWait)),
            Fate::ServerClosed => (None, Some(TimeWait)),
            Fate::ServerHalfClosed => (Some(CloseWait), Some(FinWait2)),
            Fate::Quiet => (Some(Established), Some(SynRecv)),
        }
    }
}

/// The sockets the test made, with the state each should be in.
///
/// Every port, listening or connecting, is private and used once. Private: taken below the
/// ephemeral range, where connect() never picks one, and bound without SO_REUSEADDR, which
/// fails while any socket (TIME_WAIT included) holds the port; a port from bind(0) may be
/// shared with someone's TIME_WAIT socket, which would count in a census by port. Once: a
/// new client on an old client's port would recycle the server's TIME_WAIT socket with its
/// SYN.
struct Lab {
    /// (state, local end, remote end)
    sockets: Vec<(TcpState, SocketAddr, SocketAddr)>,
    /// Streams kept open so their sockets stay.
    keep: Vec<TcpStream>,
    listeners: Vec<TcpListener>,
    /// The private ports not tried yet.
    ports: std::ops::Range<u16>,
}

impl Lab {
    fn new() -> Lab {
        let (lo, _) = probe::Limits::read().ip_local_port_range.unwrap_or((32768, 60999));
        assert!(lo > 12_000, "the ephemeral range leaves no private ports");
        let start = 10_000 + (std::process::id() % 100) as u16 * 20;
        Lab { sockets: Vec::new(), keep: Vec::new(), listeners: Vec::new(), ports: start..lo }
    }

    /// A socket bound to the next private port free on `addr`.
    fn bind(&mut self, addr: IpAddr) -> Socket {
        self.ports
            .find_map(|port| {
                let at = SocketAddr::new(addr, port);
                let socket = Socket::new(Domain::for_address(at), Type::STREAM, None).unwrap();
                socket.bind(&at.into()).ok().map(|()| socket)
            })
            .expect("no free port below the ephemeral range")
    }

    /// Listen on a private port that no other socket of the machine uses (checked with ss).
    fn listen(&mut self, addr: IpAddr, defer_accept: bool) -> SocketAddr {
        let listener = loop {
            let socket = self.bind(addr);
            let port = socket.local_addr().unwrap().as_socket().unwrap().port();
            socket.listen(1024).unwrap();
            if ss(&format!("sport = :{port} or dport = :{port}")).total() == 1 {
                break TcpListener::from(socket);
            }
        };
        if defer_accept {
            set_defer_accept(&listener);
        }
        let at = listener.local_addr().unwrap();
        self.sockets.push((TcpState::Listen, at, SocketAddr::new(unspecified(addr), 0)));
        self.listeners.push(listener);
        at
    }

    /// Make one connection from `from` to the listener at `to` and drive it to `fate`.
    fn connect(&mut self, from: IpAddr, to: SocketAddr, fate: Fate) {
        let socket = self.bind(from);
        let listener = self.listeners.iter().find(|l| l.local_addr().unwrap() == to).unwrap();
        socket.connect(&to.into()).unwrap();
        let mut client: TcpStream = socket.into();
        let client_end = client.local_addr().unwrap();
        let (client_state, server_state) = fate.states();
        if let Some(state) = client_state {
            self.sockets.push((state, client_end, to));
        }
        if let Some(state) = server_state {
            self.sockets.push((state, to, client_end));
        }
        if fate == Fate::Quiet {
            self.keep.push(client);
            return;
        }

        // One byte, read by the server: a deferred accept needs data, and closing with
        // unread data would send RST instead of FIN.
        client.write_all(b"x").unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client_end);
        server.read_exact(&mut [0]).unwrap();
        let mut eof = [0u8; 1];
        match fate {
            Fate::Open | Fate::Quiet => self.keep.extend([client, server]),
            Fate::ClientClosed => {
                drop(client);
                assert_eq!(server.read(&mut eof).unwrap(), 0);
            }
            Fate::ClientHalfClosed => {
                client.shutdown(Shutdown::Write).unwrap();
                assert_eq!(server.read(&mut eof).unwrap(), 0);
                self.keep.extend([client, server]);
            }
            Fate::ServerClosed => {
                drop(server);
                assert_eq!(client.read(&mut eof).unwrap(), 0);
            }
            Fate::ServerHalfClosed => {
                drop(server);
                assert_eq!(client.read(&mut eof).unwrap(), 0);
                self.keep.push(client);
            }
        }
    }

    /// What a census with `filter` must find.
    fn expected(&self, filter: &Filter) -> StateCounts {
        let mut counts = StateCounts::default();
        for (state, local, remote) in &self.sockets {
            if filter.matches(*local, *remote) {
                counts.add(*state);
            }
        }
        counts
    }
}

fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

fn set_defer_accept(listener: &TcpListener) {
    let seconds: libc::c_int = 60;
    // SAFETY: a valid socket and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_DEFER_ACCEPT: {}", std::io::Error::last_os_error());
}

/// `ss -Htan <expr>` counted by state.
fn ss(expr: &str) -> StateCounts {
    let out = match Command::new("ss").args(["-Htan", expr]).output() {
        Ok(out) => out,
        Err(e) => panic!("running `ss` (install iproute2): {e}"),
    };
    assert!(out.status.success(), "ss {expr}: {}", String::from_utf8_lossy(&out.stderr));
    let mut counts = StateCounts::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let state = match line.split_whitespace().next().unwrap() {
            "ESTAB" => TcpState::Established,
            "SYN-SENT" => TcpState::SynSent,
            "SYN-RECV" => TcpState::SynRecv,
            "FIN-WAIT-1" => TcpState::FinWait1,
            "FIN-WAIT-2" => TcpState::FinWait2,
            "TIME-WAIT" => TcpState::TimeWait,
            "UNCONN" => TcpState::Close,
            "CLOSE-WAIT" => TcpState::CloseWait,
            "LAST-ACK" => TcpState::LastAck,
            "LISTEN" => TcpState::Listen,
            "CLOSING" => TcpState::Closing,
            other => panic!("ss state {other:?} in {line:?}"),
        };
        counts.add(state);
    }
    counts
}

fn nonzero(counts: &StateCounts) -> Vec<(&'static str, u64)> {
    counts.iter().filter(|&(_, n)| n > 0).map(|(s, n)| (s.key(), n)).collect()
}

#[test]
fn census_agrees_with_ss_proc_and_the_sockets_made() {
    let mut lab = Lab::new();

    // IPv4: 345 connections from two source addresses to a deferred-accept listener.
    let v4 = lab.listen(LO1, true);
    let plan = [
        (Fate::Open, 150),
        (Fate::ClientClosed, 100),
        (Fate::ClientHalfClosed, 40),
        (Fate::ServerClosed, 30),
        (Fate::ServerHalfClosed, 20),
        (Fate::Quiet, 5),
    ];
    let mut n = 0;
    for (fate, count) in plan {
        for _ in 0..count {
            lab.connect(if n % 3 == 0 { LO2 } else { LO1 }, v4, fate);
            n += 1;
        }
    }
    // IPv6: a plain listener, 6 connections open and 4 closed by the client.
    let v6 = lab.listen(LO6, false);
    for fate in [Fate::Open; 6].into_iter().chain([Fate::ClientClosed; 4]) {
        lab.connect(LO6, v6, fate);
    }

    let mut prober = Prober::new();
    assert_eq!(prober.backend(), Backend::SockDiag, "sock_diag refused: {:?}", prober.warning());
    assert_eq!(prober.warning(), None);

    // The counts the test made, in plain numbers.
    use TcpState::*;
    let client4 = Filter::client(v4.port());
    let server4 = Filter::server(v4.port());
    let made_client4 = [(Established, 155), (FinWait2, 40), (TimeWait, 100), (CloseWait, 20)];
    let made_server4 = [(Established, 150), (SynRecv, 5), (FinWait2, 20), (TimeWait, 30), (CloseWait, 40), (Listen, 1)];
    let made_client6 = [(Established, 6), (TimeWait, 4)];
    let made_server6 = [(Established, 6), (Listen, 1)];
    for (filter, made) in [
        (client4, &made_client4[..]),
        (server4, &made_server4[..]),
        (Filter::client(v6.port()), &made_client6[..]),
        (Filter::server(v6.port()), &made_server6[..]),
    ] {
        let expected = lab.expected(&filter);
        let made: Vec<_> = made.iter().map(|&(s, n)| (s.key(), n)).collect();
        assert_eq!(nonzero(&expected), made, "the test's own bookkeeping for {filter:?}");
    }

    // Closing handshakes finish in the kernel after the calls above return: wait (on the
    // kernel's own state, with a deadline) until every socket has settled.
    let filters = [
        client4,
        server4,
        Filter { remote_addr: Some(LO2), ..server4 },
        Filter { local_addr: Some(LO2), ..client4 },
        Filter { local_addr: Some(LO1), remote_addr: Some(LO1), ..server4 },
        Filter::client(v6.port()),
        Filter::server(v6.port()),
        Filter { local_addr: Some(LO6), ..Filter::server(v6.port()) },
        Filter { local_addr: Some(LO6), ..server4 },
        Filter { remote_addr: Some(LO1), ..Filter::client(v6.port()) },
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: Vec<_> = filters
            .iter()
            .filter_map(|f| {
                let census = prober.census(f).unwrap();
                (census != lab.expected(f)).then(|| (f, nonzero(&census), nonzero(&lab.expected(f))))
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "census never matched the sockets made (filter, census, expected): {pending:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // ss sees what sock_diag sees, filter for filter; so does /proc.
    let ss_exprs = [
        format!("dport = :{}", v4.port()),
        format!("sport = :{}", v4.port()),
        format!("sport = :{} and dst {LO2}", v4.port()),
        format!("dport = :{} and src {LO2}", v4.port()),
        format!("sport = :{} and src {LO1} and dst {LO1}", v4.port()),
        format!("dport = :{}", v6.port()),
        format!("sport = :{}", v6.port()),
        format!("sport = :{} and src [::1]", v6.port()),
        format!("sport = :{} and src [::1]", v4.port()),
        format!("dport = :{} and dst {LO1}", v6.port()),
    ];
    let mut proc_prober = Prober::proc_net();
    assert_eq!(proc_prober.backend(), Backend::ProcNet);
    for (filter, expr) in filters.iter().zip(&ss_exprs) {
        let census = prober.census(filter).unwrap();
        assert_eq!(nonzero(&census), nonzero(&ss(expr)), "sock_diag vs `ss -Htan '{expr}'`");
        assert_eq!(
            nonzero(&census),
            nonzero(&proc_prober.census(filter).unwrap()),
            "sock_diag vs /proc for {filter:?}"
        );
    }
    // The filters with an address really split the census.
    assert_eq!(prober.census(&filters[2]).unwrap().total() + prober.census(&filters[4]).unwrap().total(), 245);
    assert_eq!(prober.census(&filters[8]).unwrap().total(), 0);

    // Peers: the server side grouped by client address, largest first, listener left out.
    for p in [&mut prober, &mut proc_prober] {
        let census = p.census_with_peers(&server4, 5).unwrap();
        assert_eq!(census.states, lab.expected(&server4));
        let from = |addr| lab.expected(&Filter { remote_addr: Some(addr), ..server4 }).total();
        assert_eq!(
            census.peers,
            [PeerCount { addr: LO1, sockets: from(LO1) }, PeerCount { addr: LO2, sockets: from(LO2) }]
        );
        assert_eq!(census.peers.iter().map(|p| p.sockets).sum::<u64>(), 245);
        // The client side grouped by local address.
        let census = p.census_with_peers(&client4, 1).unwrap();
        let at = |addr| lab.expected(&Filter { local_addr: Some(addr), ..client4 }).total();
        assert_eq!(census.peers, [PeerCount { addr: LO1, sockets: at(LO1) }]);
    }
}
