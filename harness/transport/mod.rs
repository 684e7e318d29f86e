//! Transports a client connection runs over, below its protocol: how a connection is
//! opened (dialled) and how bytes are written to it. Today TCP ([`tcp`]); TLS and
//! WebSocket go beside it as `tls.rs` and `ws.rs`, each a [`Transport`] variant with
//! its arm in [`Transport::dial`]. Dialling returns a `TcpStream` today, which the
//! connection's steps (`engine/connection/`) and the protocol clients read and write
//! directly: a TLS or WebSocket stream needs a stream type of its own through them.

pub mod tcp;

use std::fmt;
use std::io;
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

/// The step of opening a connection that failed: the same errno means different things
/// at different steps (EADDRNOTAVAIL at bind: the source address is not this machine's;
/// at connect: no free port toward the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStep {
    /// Making the socket and setting its options.
    Socket,
    /// Binding the source address (and port).
    Bind,
    /// connect(), and the options set once connected.
    Connect,
}

/// A connection that could not be opened: the step and the error.
#[derive(Debug, thiserror::Error)]
pub struct DialError {
    pub step: DialStep,
    #[source]
    pub error: io::Error,
}

impl DialError {
    pub fn new(step: DialStep, error: io::Error) -> DialError {
        DialError { step, error }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            DialStep::Socket => "socket",
            DialStep::Bind => "bind",
            DialStep::Connect => "connect",
        };
        write!(f, "{step}: {}", self.error)
    }
}
