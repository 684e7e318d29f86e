//! One accepted connection of a WebSocket target (`ws`, or `wss` over the TLS
//! handshake): the upgrade (subprotocol `mqtt` chosen when the client offers it; any
//! path), then the same protocol exchange as over TCP ([`Connection::on_bytes`]), the
//! protocol's bytes in binary messages. `on_eof = hold` applies to a close frame or EOF.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::embedded::options::ServeOptions;
use crate::protocol::OnEof;
use crate::transport::ws::{config, SUBPROTOCOL};

use super::exchange::{Replies, Step};
use super::session::Connection;

/// How long a client may take over its TLS handshake and upgrade together.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection over WebSocket (over TLS with `tls`).
pub(in crate::embedded) fn run(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    opts: &ServeOptions,
    shutdown: CancellationToken,
    connects: Arc<AtomicU64>,
) -> impl Future<Output = ()> + Send {
    let conn = Connection::new(opts.protocol, true, connects);
    let on_eof = opts.on_eof;
    async move {
        let _ = stream.set_nodelay(true);
        // Each boxed: the task's future would otherwise be as large as its largest arm
        // (the TLS one) for every connection, and hold the handshake's state inline.
        match tls {
            None => Box::pin(serve(stream, conn, on_eof, shutdown)).await,
            Some(acceptor) => {
                let accepting = Box::pin(tokio::time::timeout(UPGRADE_TIMEOUT, acceptor.accept(stream)));
                let accepted = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    done = accepting => done,
                };
                if let Ok(Ok(tls)) = accepted {
                    Box::pin(serve(tls, conn, on_eof, shutdown)).await;
                }
            }
        }
    }
}

/// Chooses the `mqtt` subprotocol when the client offers it.
#[allow(clippy::result_large_err)] // tungstenite's callback type
fn choose_mqtt(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request.headers().get_all("Sec-WebSocket-Protocol").iter().filter_map(|v| v.to_str().ok());
    if offered.flat_map(|v| v.split(',')).any(|p| p.trim() == SUBPROTOCOL) {
        response.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    }
    Ok(response)
}

async fn serve<S>(stream: S, mut conn: Connection, on_eof: OnEof, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed, so that the handshake's state is freed once it is done.
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, choose_mqtt, Some(config()));
    let upgrading = Box::pin(tokio::time::timeout(UPGRADE_TIMEOUT, upgrade));
    let mut ws = tokio::select! {
        biased;
        () = shutdown.cancelled() => return,
        done = upgrading => match done {
            Ok(Ok(ws)) => ws,
            _ => return,
        },
    };
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            message = ws.next() => message,
        };
        let step = match message {
            Some(Ok(Message::Binary(bytes))) => {
                let mut replies = Replies::new();
                let step = conn.on_bytes(&bytes, &mut replies);
                let out = replies.as_slice();
                if !out.is_empty() {
                    let sent = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        sent = ws.send(Message::binary(out.to_vec())) => sent,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                step
            }
            Some(Ok(Message::Close(_))) | None => Step::Eof,
            Some(Ok(_)) => Step::Continue,
            Some(Err(_)) => Step::Close,
        };
        match step {
            Step::Continue => {}
            Step::Close => return,
            Step::Eof if on_eof == OnEof::Hold => {
                shutdown.cancelled().await;
                return;
            }
            Step::Eof => {
                // The close handshake, then our FIN first (RFC 6455: the server closes
                // the TCP connection first); over TLS with our close_notify, then the
                // client's read to its end so that nothing unread turns our close into
                // an RST. Bounded: at most a second.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = ws.close(None).await;
                    let inner = ws.get_mut();
                    inner.shutdown().await?;
                    let mut sink = [0u8; 64];
                    while inner.read(&mut sink).await? > 0 {}
                    Ok::<(), std::io::Error>(())
                })
                .await;
                return;
            }
        }
    }
}
