//! [`Stream`]: a client connection's byte stream whatever its transport, the type the
//! connection's steps (`engine/connection/`) hold. Plain TCP is read and written as
//! before (the protocol peeks at the kernel's receive queue); TLS goes through rustls.
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

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;

use crate::protocol::session::Readout;
use crate::protocol::Protocol;

/// A connected client stream. The TLS state is boxed: it is large (rustls keeps its
/// buffers and keys), and a TCP connection's task must not grow by it.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
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
        }
    }

    /// Shut the sending side down: TCP's FIN; for TLS, close_notify, then the FIN.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => tcp.shutdown().await,
            Stream::Tls(tls) => tls.shutdown().await,
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
