//! Tests on live kernel sockets: both sock_diag requests and the /proc fallback count the
//! same sockets, and the recorder of the golden replies that `sockdiag` and `procnet` test
//! against.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

use super::fallback::{proc_net_census, PROC_NET_TCP, PROC_NET_TCP6};
use super::filter::Filter;
use super::tally::Tally;
use super::{netlink, sockdiag};
use crate::state::TcpState;

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
    let mut per_family_diag = netlink::SockDiag::open_per_family().unwrap();
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
        per_family_diag.dump_tcp(filter, |m| per_family.add(m.state(), |_| lo)).unwrap();
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
