//! The embedded target served in-process for tests: start it on a free loopback port,
//! connect to it, count its sockets with the probe, stop it.

use std::net::SocketAddr;
use std::time::Duration;

use probe::Filter;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::options::{ServeOptions, ServeSummary};
use super::server::serve;
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
