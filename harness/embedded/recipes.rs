//! The TCP state recipes, as tests: each one puts loopback sockets in a state by
//! pairing a misbehaving embedded target ([`ServeOptions`]) with what a client
//! does, and asserts the count of that state on both sides with the probe.
//! The scenario files under `scenarios/states/` follow the same recipes.
//!
//! | state (client / server)      | target                                  | client                              |
//! |------------------------------|-----------------------------------------|-------------------------------------|
//! | SYN_SENT / —                 | `--no-accept --backlog 1`               | connect more than backlog + 1       |
//! | ESTABLISHED / SYN_RECV       | `--defer-accept 30s`                    | connect, send nothing               |
//! | FIN_WAIT_1 / ESTABLISHED     | `--no-read`                             | fill, half-close (or close)         |
//! | CLOSING / FIN_WAIT_2         | `--no-read --shutdown-after 1s`         | fill, half-close before the FIN     |
//! | CLOSE_WAIT / FIN_WAIT_2      | `--shutdown-after 200ms`                | read EOF, keep the socket           |
//! | LAST_ACK / FIN_WAIT_2        | `--no-read --shutdown-after 0s`         | read EOF, fill, half-close or close |
//! | — / TIME_WAIT                | `--shutdown-after 200ms`                | read EOF, close                     |
//!
//! "Fill" means: write until the socket refuses more *and* part of what it
//! holds is unsent (the target's receive window is closed), so a FIN queued
//! after it cannot leave. A filling client fixes a small SO_SNDBUF first.

use std::net::Shutdown;
use std::time::Duration;

use probe::{Filter, Prober, StateCounts, TcpState};
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};

use super::options::{ServeOptions, ServeSummary};
use super::testing::TestServer;
use crate::protocol::Protocol;

/// How long a state may take to appear before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Connections per recipe: several, so that a count is asserted, not a flag.
const N: usize = 4;

/// SO_SNDBUF of a client that fills the window (the kernel doubles it, and
/// lets a write overshoot it: about 47 KB stays unsent on loopback).
const SMALL_SEND_BUFFER: u32 = 4096;

/// A `tcp` target with `opts`' misbehaviours on a free loopback port.
async fn start(opts: ServeOptions) -> TestServer {
    TestServer::start_with(ServeOptions { protocol: Protocol::Tcp, ..opts }).await
}

/// A client whose send buffer is fixed at its minimum, as a client that fills the
/// window should be: autotuned, it would take up to `tcp_wmem[2]` (4 MiB) of unsent
/// data per connection.
async fn connect_to_fill(target: &TestServer) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SMALL_SEND_BUFFER).unwrap();
    tokio::time::timeout(PATIENCE, socket.connect(target.addr)).await.expect("connects").unwrap()
}

/// Counts matching sockets by state.
fn census(filter: &Filter) -> StateCounts {
    Prober::new().census(filter).expect("census")
}

/// Polls the census until `holds` is true (every 10 ms, up to [`PATIENCE`]);
/// returns the census that held, or fails with the last one.
async fn wait_for(filter: Filter, what: &str, holds: impl Fn(&StateCounts) -> bool) -> StateCounts {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let counts = census(&filter);
        if holds(&counts) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: never held, last census {counts:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until exactly `n` matching sockets are in `state`.
async fn wait_for_state(filter: Filter, state: TcpState, n: u64) -> StateCounts {
    wait_for(filter, &format!("{n} sockets in {state:?}"), |c| c.get(state) == n).await
}

/// Bytes in the send queue that were never sent.
fn unsent(stream: &TcpStream) -> usize {
    crate::socket::unsent_bytes(stream).expect("SIOCOUTQNSD")
}

/// Fills the send buffer as the engine does, and insists the window closed: some
/// of the data must stay unsent, so a FIN queued now stays behind it.
pub(super) async fn fill(stream: &TcpStream) -> usize {
    let written = crate::socket::fill_send_buffer(stream).await;
    assert!(unsent(stream) > 0, "the window did not close after {written} bytes");
    written
}

/// Waits for the target's FIN: the read returns end of stream.
async fn read_eof(stream: &TcpStream) {
    loop {
        tokio::time::timeout(PATIENCE, stream.readable()).await.expect("the target's FIN arrives").unwrap();
        match stream.try_read(&mut [0; 64]) {
            Ok(0) => return,
            Ok(n) => panic!("the target sent {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

fn half_close(stream: &TcpStream) {
    SockRef::from(stream).shutdown(Shutdown::Write).unwrap();
}

/// SYN_SENT: the accept queue of a listener that never accepts holds
/// backlog + 1 connections (the kernel's test is `queued > backlog`); every
/// later SYN is dropped, and its client retries (1 s, 3 s, 7 s, ... until
/// tcp_syn_retries gives up after about 2 minutes).
#[tokio::test]
async fn no_accept_leaves_clients_in_syn_sent() {
    let target = start(ServeOptions { backlog: 1, accept: false, ..ServeOptions::default() }).await;
    let addr = target.addr;
    let connects: Vec<_> =
        (0..10).map(|_| tokio::spawn(async move { TcpSocket::new_v4().unwrap().connect(addr).await })).collect();

    let clients = wait_for(target.clients(), "2 established, 8 syn-sent", |c| {
        c.get(TcpState::Established) == 2 && c.get(TcpState::SynSent) == 8
    })
    .await;
    assert_eq!(clients.total(), 10, "{clients:?}");
    let server = census(&target.server());
    assert_eq!(server.get(TcpState::Listen), 1, "{server:?}");
    assert_eq!(server.get(TcpState::Established), 2, "queued, never accepted: {server:?}");
    assert_eq!(server.get(TcpState::SynRecv), 0, "{server:?}");
    let done = connects.iter().filter(|c| c.is_finished()).count();
    assert_eq!(done, 2, "only the queued connects complete");

    assert_eq!(target.stop().await, ServeSummary::default());
    for connect in connects {
        connect.abort();
    }
}

/// SYN_RECV: with TCP_DEFER_ACCEPT the handshake's last ACK, carrying no data,
/// leaves a request socket (SYN_RECV) on the server while the client is
/// ESTABLISHED; the first data byte turns it into an accepted connection.
#[tokio::test]
async fn defer_accept_keeps_silent_clients_in_syn_recv() {
    let opts = ServeOptions { defer_accept: Some(Duration::from_secs(30)), ..ServeOptions::default() };
    let target = start(opts).await;
    let mut silent = Vec::new();
    for _ in 0..N {
        silent.push(target.connect().await);
    }
    let server = wait_for_state(target.server(), TcpState::SynRecv, N as u64).await;
    assert_eq!(server.get(TcpState::Established), 0, "{server:?}");
    let clients = census(&target.clients());
    assert_eq!(clients.get(TcpState::Established), N as u64, "{clients:?}");

    // Data ends the deferral: the target accepts, reads, and closes on EOF.
    let talker = target.connect().await;
    talker.try_write(b"x").unwrap();
    half_close(&talker);
    read_eof(&talker).await;
    let server = census(&target.server());
    assert_eq!(server.get(TcpState::SynRecv), N as u64, "the silent ones are still deferred: {server:?}");

    let summary = target.stop().await;
    assert_eq!(summary.accepted, 1, "only the client that sent data is accepted");
}

/// FIN_WAIT_1: the target never reads, the client fills the window and closes
/// its side: the FIN is queued behind unsent data and never leaves, whether the
/// client keeps the socket (shutdown) or not (close).
#[tokio::test]
async fn no_read_keeps_the_client_fin_queued_in_fin_wait_1() {
    let target = start(ServeOptions { read: false, ..ServeOptions::default() }).await;
    let mut kept = Vec::new();
    for i in 0..N {
        let client = connect_to_fill(&target).await;
        assert!(fill(&client).await > 0);
        if i % 2 == 0 {
            half_close(&client);
            kept.push(client);
        } else {
            drop(client);
        }
    }
    let clients = wait_for_state(target.clients(), TcpState::FinWait1, N as u64).await;
    assert_eq!(clients.total(), N as u64, "{clients:?}");
    let server = census(&target.server());
    assert_eq!(server.get(TcpState::Established), N as u64, "the FIN never arrived: {server:?}");
    target.stop().await;
}

/// CLOSING: both FINs in flight at once, made durable. The client fills the
/// window and half-closes (FIN_WAIT_1, its FIN stuck behind data); then the
/// target's FIN arrives: the client acknowledges it and waits for the ACK of a
/// FIN it cannot send.
#[tokio::test]
async fn no_read_and_shutdown_after_leave_the_client_closing() {
    let opts = ServeOptions { read: false, shutdown_after: Some(Duration::from_secs(1)), ..ServeOptions::default() };
    let target = start(opts).await;
    let mut kept = Vec::new();
    for _ in 0..N {
        let client = connect_to_fill(&target).await;
        fill(&client).await;
        half_close(&client);
        kept.push(client);
    }
    // Before the target's FIN: the client FINs are queued.
    wait_for_state(target.clients(), TcpState::FinWait1, N as u64).await;
    let clients = wait_for_state(target.clients(), TcpState::Closing, N as u64).await;
    assert_eq!(clients.total(), N as u64, "{clients:?}");
    // Its FIN was acknowledged (at once: a FIN in FIN_WAIT_1 is acked without delay).
    wait_for_state(target.server(), TcpState::FinWait2, N as u64).await;
    target.stop().await;
}

/// LAST_ACK: the target sends its FIN at once (client CLOSE_WAIT, which may
/// still send), the client fills the window and closes its side: its FIN
/// queues behind the unsent data, whether it keeps the socket or not.
#[tokio::test]
async fn no_read_and_shutdown_after_leave_the_client_in_last_ack() {
    let opts = ServeOptions { read: false, shutdown_after: Some(Duration::ZERO), ..ServeOptions::default() };
    let target = start(opts).await;
    let mut clients = Vec::new();
    for _ in 0..N {
        let client = connect_to_fill(&target).await;
        read_eof(&client).await;
        clients.push(client);
    }
    let counts = wait_for_state(target.clients(), TcpState::CloseWait, N as u64).await;
    assert_eq!(counts.total(), N as u64, "{counts:?}");
    let mut kept = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        fill(&client).await;
        if i % 2 == 0 {
            half_close(&client);
            kept.push(client);
        }
    }
    let counts = wait_for_state(target.clients(), TcpState::LastAck, N as u64).await;
    assert_eq!(counts.total(), N as u64, "{counts:?}");
    // The client acknowledged the target's FIN as it entered CLOSE_WAIT, but
    // late: a FIN puts the receiver in delayed-ACK (pingpong) mode.
    wait_for_state(target.server(), TcpState::FinWait2, N as u64).await;
    target.stop().await;
}

/// CLOSE_WAIT on the client, then TIME_WAIT on the server: the target sends
/// its FIN first; a client that keeps its socket sits in CLOSE_WAIT (the target
/// in FIN_WAIT_2); once it closes, the TIME_WAIT is the target's.
#[tokio::test]
async fn shutdown_after_puts_time_wait_on_the_server() {
    let opts = ServeOptions { shutdown_after: Some(Duration::from_millis(200)), ..ServeOptions::default() };
    let target = start(opts).await;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(target.connect().await);
    }
    for client in &clients {
        read_eof(client).await;
    }
    let counts = wait_for_state(target.clients(), TcpState::CloseWait, N as u64).await;
    assert_eq!(counts.total(), N as u64, "{counts:?}");
    let server = wait_for_state(target.server(), TcpState::FinWait2, N as u64).await;
    assert_eq!(server.get(TcpState::TimeWait), 0, "{server:?}");

    drop(clients);
    wait_for_state(target.server(), TcpState::TimeWait, N as u64).await;
    let counts = wait_for(target.clients(), "no client socket left", |c| c.total() == 0).await;
    assert_eq!(counts.get(TcpState::TimeWait), 0);
    assert_eq!(target.stop().await.accepted, N as u64);
}
