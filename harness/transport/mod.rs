//! Transports a client connection runs over, below its protocol: how a connection is
//! opened (dialled) and how bytes are written to it. Today TCP ([`tcp`]); TLS and
//! WebSocket go beside it as `tls.rs` and `ws.rs`, each a [`Transport`] variant with
//! its arm in [`Transport::dial`]. Dialling returns a `TcpStream` today, which the
//! connection's steps (`engine/connection/`) and the protocol clients read and write
//! directly: a TLS or WebSocket stream needs a stream type of its own through them.

mod error;
pub mod tcp;

pub use error::{DialError, DialStep};

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// The transport of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
}

impl Transport {
    /// Open a connection to `target` from `source` (see [`tcp::dial`]); returns it and the
    /// instant connect() was called.
    pub async fn dial(
        self,
        target: SocketAddr,
        source: Option<SocketAddr>,
        sndbuf: Option<u32>,
        port_taken: impl FnOnce(),
    ) -> Result<(TcpStream, Instant), DialError> {
        match self {
            Transport::Tcp => tcp::dial(target, source, sndbuf, port_taken).await,
        }
    }
}
