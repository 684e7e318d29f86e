//! [`Stream`]: a client connection's byte stream whatever its transport, the type the
//! connection's steps (`engine/connection/`) hold. Plain TCP is read and written as
//! before (the protocol peeks at the kernel's receive queue); TLS goes through rustls;
//! WebSocket (over either) through tungstenite, the protocol's bytes in binary messages.
//! Either way [`Stream::tcp`] gives the socket underneath, for what acts on the socket
//! itself: readiness, the kernel's queues, SO_LINGER, the local address.
//!
//! TLS reads and writes that must not wait (a held connection's receive, its ping) are
//! polled once with a no-op waker: the task waits on the socket's readiness instead, as
//! for TCP. A TLS read that returns `Pending` has taken every plaintext byte rustls
//! held (tokio-rustls reads the socket only when none is buffered), so waiting on the
//! socket's readiness afterwards misses nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use tokio_tungstenite::tungstenite::Error as WsError;

use crate::protocol::session::Readout;
use crate::protocol::Protocol;

/// A connected client stream. The TLS state is boxed: it is large (rustls keeps its
/// buffers and keys), and a TCP connection's task must not grow by it.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket over a `Tcp` or `Tls` stream.
    Ws(Box<WebSocketStream<Stream>>),
}

impl Stream {
    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
            Stream::Ws(ws) => ws.get_ref().tcp(),
        }
    }

    /// Write a short message whole (and, for TLS, flush it to the socket).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => super::tcp::write_all(tcp, bytes).await,
            Stream::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
            Stream::Ws(ws) => ws.send(Message::binary(bytes.to_vec())).await.map_err(ws_io_error),
        }
    }

    /// Write what the socket takes now, without waiting (a keep-alive ping).
    /// `WouldBlock` when nothing could be taken.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.try_write(bytes),
            Stream::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut tls = Pin::new(tls.as_mut());
                let written = match tls.as_mut().poll_write(&mut cx, bytes) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                };
                // What the socket did not take stays in rustls and goes with the next write.
                if let Poll::Ready(Err(e)) = tls.poll_flush(&mut cx) {
                    return Err(e);
                }
                Ok(written)
            }
            Stream::Ws(ws) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut ws = Pin::new(ws.as_mut());
                match ws.as_mut().poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Err(ws_io_error(e)),
                    Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                }
                ws.as_mut().start_send(Message::binary(bytes.to_vec())).map_err(ws_io_error)?;
                if let Poll::Ready(Err(e)) = ws.poll_flush(&mut cx) {
                    return Err(ws_io_error(e));
                }
                Ok(bytes.len())
            }
        }
    }

    /// Shut the sending side down: TCP's FIN; for TLS, close_notify, then the FIN; for
    /// WebSocket, the close frame.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => tcp.shutdown().await,
            Stream::Tls(tls) => tls.shutdown().await,
            // The close frame only: RFC 6455 has the server close the TCP connection
            // first once the close handshake is done (the FIN close waits for both).
            Stream::Ws(ws) => ws.send(Message::Close(None)).await.map_err(ws_io_error),
        }
    }

    /// Take what a held connection received, without waiting. TCP: the protocol reads
    /// the kernel's queue ([`Protocol::receive`]). TLS: the plaintext, in 64-byte reads
    /// into a stack array, until nothing is left; the protocol says whether its pong was
    /// among it ([`Protocol::pong_in`]: a packet split across two reads is not seen).
    pub fn receive(&mut self, protocol: Protocol) -> Readout {
        let tls = match self {
            Stream::Tcp(tcp) => return protocol.receive(tcp),
            Stream::Tls(tls) => tls,
            Stream::Ws(ws) => return receive_ws(ws, protocol),
        };
        let mut cx = Context::from_waker(Waker::noop());
        let (mut taken, mut pong) = (false, false);
        loop {
            let mut buf = [0u8; 64];
            let mut read = ReadBuf::new(&mut buf);
            match Pin::new(tls.as_mut()).poll_read(&mut cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return if taken { Readout::Data { pong } } else { Readout::Eof };
                }
                Poll::Ready(Ok(())) => {
                    taken = true;
                    pong |= protocol.pong_in(read.filled());
                }
                // tokio's cooperative budget or the socket: wait for readiness (the
                // budget's own wake-up was the no-op waker's; the hold loop's poll of
                // the readiness, out of budget too, schedules the task again).
                Poll::Pending => return if taken { Readout::Data { pong } } else { Readout::Nothing },
                Poll::Ready(Err(e)) if taken && e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Readout::Data { pong }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Readout::Eof,
                Poll::Ready(Err(e)) => return Readout::Failed(e),
            }
        }
    }

    /// Fill the send buffer until the peer's window is closed (see
    /// [`crate::socket::fill_send_buffer`]); over TLS the zeros go as TLS records.
    pub async fn fill_send_buffer(&mut self) -> usize {
        let tls = match self {
            Stream::Tcp(tcp) => return crate::socket::fill_send_buffer(tcp).await,
            Stream::Tls(tls) => tls,
            // Inside its binary messages: the stream underneath fills as it would.
            Stream::Ws(ws) => return Box::pin(ws.get_mut().fill_send_buffer()).await,
        };
        const MAX_FILL: usize = 64 << 20;
        static ZEROS: [u8; 4096] = [0; 4096];
        let mut written = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while written < MAX_FILL {
            let polled = Pin::new(tls.as_mut()).poll_write(&mut Context::from_waker(Waker::noop()), &ZEROS);
            match polled {
                Poll::Ready(Ok(n)) if n > 0 => written += n,
                Poll::Pending => {
                    let tcp = tls.get_ref().0;
                    if crate::socket::unsent_bytes(tcp).unwrap_or(1) > 0 {
                        break;
                    }
                    if timeout_at(deadline, tcp.writable()).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        written
    }
}

/// A tungstenite error as an I/O error, for the steps that speak `io`.
pub fn ws_io_error(err: WsError) -> io::Error {
    match err {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::UnexpectedEof.into(),
        // The target closed the connection without a close frame (an MQTT server may,
        // after DISCONNECT): its end, not a failure.
        WsError::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            io::ErrorKind::UnexpectedEof.into()
        }
        other => io::Error::other(other),
    }
}

/// A WebSocket's messages taken without waiting: binary ones are the protocol's bytes;
/// a close frame is the target's close. tungstenite answers pings itself.
fn receive_ws(ws: &mut WebSocketStream<Stream>, protocol: Protocol) -> Readout {
    let mut cx = Context::from_waker(Waker::noop());
    let (mut taken, mut pong) = (false, false);
    loop {
        match Pin::new(&mut *ws).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(Message::Close(_)))) | Poll::Ready(None) => {
                return if taken { Readout::Data { pong } } else { Readout::Eof };
            }
            Poll::Ready(Some(Ok(message))) => {
                taken = true;
                if let Message::Binary(bytes) = message {
                    pong |= protocol.pong_in(&bytes);
                }
            }
            Poll::Pending => return if taken { Readout::Data { pong } } else { Readout::Nothing },
            Poll::Ready(Some(Err(e))) => match ws_io_error(e) {
                e if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return if taken { Readout::Data { pong } } else { Readout::Eof };
                }
                e => return Readout::Failed(e),
            },
        }
    }
}

/// The stream under a WebSocket: TCP or TLS (a WebSocket inside one is never made).
impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Ws(_) => Poll::Ready(Err(io::Error::other("a WebSocket inside a WebSocket"))),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Ws(_) => Poll::Ready(Err(io::Error::other("a WebSocket inside a WebSocket"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Ws(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Ws(_) => Poll::Ready(Ok(())),
        }
    }
}
