//! Transports a client connection runs over, below its protocol: how a connection is
//! opened (dialled) and how bytes are written to it. TCP ([`tcp`]) is dialled first
//! whatever the transport; TLS ([`tls`]) then runs its handshake on the connected
//! socket. The connection's steps (`engine/connection/`) hold a [`Stream`] (`stream.rs`):
//! TCP as it was, or TLS over it, with the socket underneath always at hand. WebSocket
//! would go beside them as `ws.rs`, a [`Transport`] variant and a [`Stream`] variant.

mod error;
mod stream;
pub mod tcp;
pub mod tls;
pub mod ws;

pub use error::{DialError, DialStep};
pub use stream::{ws_io_error, Stream};
pub use tls::{TlsClient, TlsConfigError, TlsSettings};
pub use ws::{WsClient, WsSettings};

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// The transport of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (rustls).
    Tls,
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// The transport a scenario's `transport` names (`"tcp"`, `"tls"`).
    pub fn parse(name: &str) -> Option<Transport> {
        match name {
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            "ws" => Some(Transport::Ws),
            "wss" => Some(Transport::Wss),
            _ => None,
        }
    }

    /// Its name in scenarios and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether it runs over TLS (`tls`, `wss`).
    pub fn uses_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether it runs over WebSocket (`ws`, `wss`).
    pub fn uses_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Open the TCP connection to `target` from `source` (see [`tcp::dial`]), which every
    /// transport starts with; returns it and the instant connect() was called. TLS's
    /// handshake follows ([`TlsClient::handshake`]), timed on its own.
    pub async fn dial(
        self,
        target: SocketAddr,
        source: Option<SocketAddr>,
        sndbuf: Option<u32>,
        port_taken: impl FnOnce(),
    ) -> Result<(TcpStream, Instant), DialError> {
        tcp::dial(target, source, sndbuf, port_taken).await
    }
}
