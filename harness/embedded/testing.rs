//! The embedded target served in-process for tests: start it on a free loopback port,
//! connect to it, count its sockets with the probe, stop it; and what its clients in
//! tests send and expect.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use probe::Filter;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::options::{ServeOptions, ServeSummary};
use super::server::serve;
use crate::protocol::mqtt;
use crate::protocol::Protocol;

/// How long a test waits for the server to connect or stop.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running embedded target.
pub(super) struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<ServeSummary>>,
}

impl TestServer {
    /// `protocol` with a backlog of 64 and every other option at its default.
    pub async fn start(protocol: Protocol) -> TestServer {
        TestServer::start_with(ServeOptions { protocol, backlog: 64, ..ServeOptions::default() }).await
    }

    pub async fn start_with(opts: ServeOptions) -> TestServer {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(serve(opts, shutdown.clone(), move |addr| {
            ready_tx.send(addr).unwrap();
        }));
        let addr = ready_rx.await.expect("the server reports its address");
        assert_ne!(addr.port(), 0);
        TestServer { addr, shutdown, task }
    }

    pub async fn connect(&self) -> TcpStream {
        tokio::time::timeout(PATIENCE, TcpStream::connect(self.addr)).await.expect("connects").unwrap()
    }

    /// Client-side sockets: those whose peer is the server's port.
    pub fn clients(&self) -> Filter {
        Filter { remote_addr: Some(self.addr.ip()), ..Filter::client(self.addr.port()) }
    }

    /// Server-side sockets: the listener, its request sockets and connections.
    pub fn server(&self) -> Filter {
        // With the address: another program's client socket may have this port on
        // another loopback address (sockcap binds explicit source ports).
        Filter { local_addr: Some(self.addr.ip()), ..Filter::server(self.addr.port()) }
    }

    pub async fn stop(self) -> ServeSummary {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task).await.expect("serve returns promptly on shutdown").unwrap().unwrap()
    }
}

/// An MQTT 3.1.1 CONNECT from `client_id`.
pub(super) fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let connect =
        mqtt::Connect { v5: None, client_id, keep_alive_s: 30, clean_session: true, username: None, password: None };
    mqtt::encode_connect(&connect, &mut out);
    out
}

/// The next `N` bytes the server sends.
pub(super) async fn read_exact<const N: usize>(stream: &mut TcpStream) -> [u8; N] {
    let mut buf = [0; N];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("the server answers")
        .expect("the connection stays open");
    buf
}

/// Waits for the server to close: EOF, or a reset if it had unread bytes.
pub(super) async fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("the server closes the connection");
    match read {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {:02x?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
    }
}

/// Asserts that the server neither sends nor closes for a while.
pub(super) async fn assert_still_open(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}
