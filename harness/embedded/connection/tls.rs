//! One accepted connection of a TLS target: the handshake (within
//! [`HANDSHAKE_TIMEOUT`]), then the same protocol exchange as over TCP
//! ([`Connection::on_bytes`]), reading plaintext through rustls.
//!
//! Misbehaviours: `on_eof` applies (`hold`: stop reading, keep the socket);
//! `read: false` and `shutdown_after` are TCP recipes, refused with TLS by
//! `sockcap serve`. Memory: the task waits in a `poll_fn` whose read buffer lives
//! only during a poll (a stack array), so nothing of sockcap's is held across the
//! idle await besides the TLS state, which rustls owns (its buffers and keys).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::embedded::options::ServeOptions;
use crate::protocol::OnEof;

use super::exchange::{Replies, Step};
use super::session::Connection;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of plaintext read per poll.
const READ_CHUNK: usize = 2048;

/// Serves one accepted connection over TLS until the protocol closes it, the peer
/// goes away, or `shutdown` is cancelled.
pub(in crate::embedded) fn run(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    opts: &ServeOptions,
    shutdown: CancellationToken,
    connects: Arc<AtomicU64>,
) -> impl Future<Output = ()> + Send {
    let mut conn = Connection::new(opts.protocol, true, connects);
    let on_eof = opts.on_eof;
    async move {
        let _ = stream.set_nodelay(true);
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
        let mut tls = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                _ => return,
            },
        };
        loop {
            let read = std::future::poll_fn(|cx| {
                let mut chunk = [0u8; READ_CHUNK];
                let mut buf = ReadBuf::new(&mut chunk);
                match Pin::new(&mut tls).poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(_)) => Poll::Ready((Step::Close, None)),
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready((Step::Eof, None)),
                    Poll::Ready(Ok(())) => {
                        let mut replies = Replies::new();
                        let step = conn.on_bytes(buf.filled(), &mut replies);
                        let out = replies.as_slice();
                        Poll::Ready((step, (!out.is_empty()).then(|| out.to_vec())))
                    }
                }
            });
            let (step, replies) = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                read = read => read,
            };
            if let Some(replies) = replies {
                let sent = async {
                    tls.write_all(&replies).await?;
                    tls.flush().await
                };
                let sent = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    sent = sent => sent,
                };
                if sent.is_err() {
                    return;
                }
            }
            match step {
                Step::Continue => {}
                Step::Close => return,
                Step::Eof if on_eof == OnEof::Hold => {
                    shutdown.cancelled().await;
                    return;
                }
                Step::Eof => {
                    // The client's close_notify: ours in answer, then our FIN only once
                    // the client's FIN is in, so that the close stays the client's (its
                    // TIME_WAIT), as over TCP. Answering with a FIN at once raced the
                    // client's, which follows its close_notify: about 1 in 4 closes then
                    // left the TIME_WAIT here. Bounded: at most a second.
                    tls.get_mut().1.send_close_notify();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        tls.flush().await?;
                        let tcp = tls.get_ref().0;
                        loop {
                            tcp.readable().await?;
                            let mut sink = [0u8; 64];
                            match tcp.try_read(&mut sink) {
                                Ok(0) => return Ok::<(), std::io::Error>(()),
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) => return Err(e),
                            }
                        }
                    })
                    .await;
                    return;
                }
            }
        }
    }
}
