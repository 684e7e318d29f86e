//! Holding an open connection: the protocol's keep-alive rung by the worker's
//! [`Bell`](crate::engine::worker::held::Bell), read readiness, the target's close,
//! until the worker's close order, the end of the run, or the connection's loss. What it reads goes through the protocol
//! ([`Protocol::receive`](crate::protocol::Protocol::receive)).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use tokio::time::Instant;

use super::active::{active, cannot_carry};
use super::close::close_held;
use super::command::CloseCommand;
use super::links::{Event, Links};
use crate::failure::ErrorKind;
use crate::protocol::mqtt::disconnect_v5;
use crate::protocol::session::Readout;
use crate::protocol::OnEof;
use crate::transport::Stream;

/// MQTT 5's reason code 0x82, protocol error: the client's answer to an AUTH it never asked for.
const PROTOCOL_ERROR: u8 = 0x82;

/// Where a held connection is in its life (after a half-close of ours it is in
/// [`half_closed`](super::close)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Established and (MQTT) accepted; keep-alive running.
    Held,
    /// Closed by the target and kept open by the client (CLOSE_WAIT) until told to close.
    PeerClosed,
}

/// What woke a held connection, in the order it is handled: the worker's orders first,
/// then the socket, then the keep-alive ping (after any PINGRESP waiting to be read).
enum Wake {
    Stop,
    Close(CloseCommand),
    Traffic,
    Readable(io::Result<()>),
    Ping,
}

/// Hold an open connection until the worker's close order, the end of the run, or its
/// loss. Lost (reported as [`Event::Lost`]): `Some`, with the lost socket's local
/// address when the kernel still tells it (a reconnect binds its IP again).
///
/// Across its idle await the task keeps only the stream, a reference and two flags: it
/// waits on the socket's read readiness (`poll_read_ready`: the waker lives in the
/// socket's registration) and on its [`Bell`](crate::engine::worker::held::Bell) (the worker's close and stop orders and the
/// keep-alive tick), both polled by one `poll_fn`.
#[allow(clippy::manual_async_fn)] // on purpose: see [`run`](super::run)
pub(super) fn hold(mut stream: Stream, links: &Links) -> impl Future<Output = Option<Option<SocketAddr>>> + '_ {
    async move {
        // The server's keep-alive (MQTT 5) when it told one: the worker's tick runs when
        // the scenario's keep-alive is not zero.
        let keep_alive = links.spec.keep_alive();
        if links.spec.protocol.ping().is_some() && !keep_alive.is_zero() && !links.spec.mqtt.keep_alive.is_zero() {
            links.bell.ping_at(Some(Instant::now() + keep_alive));
        }
        let mut awaiting_pong = false;
        let mut lifecycle = Lifecycle::Held;
        let close_order = loop {
            let wake = std::future::poll_fn(|cx| {
                let rings = links.bell.poll(cx);
                if rings.stop {
                    return Poll::Ready(Wake::Stop);
                }
                if let Some(cmd) = rings.close {
                    return Poll::Ready(Wake::Close(cmd));
                }
                if rings.traffic {
                    return Poll::Ready(Wake::Traffic);
                }
                if lifecycle == Lifecycle::Held {
                    // Spends tokio's cooperative budget: against a target that sends
                    // without pause this returns Pending once the budget is out, so the
                    // task yields and a rung ping (and its timeout) still gets its turn.
                    if let Poll::Ready(ready) = stream.tcp().poll_read_ready(cx) {
                        return Poll::Ready(Wake::Readable(ready));
                    }
                }
                if rings.ping {
                    return Poll::Ready(Wake::Ping);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Stop => return None,
                Wake::Close(cmd) => break Some(cmd),
                Wake::Traffic if lifecycle == Lifecycle::PeerClosed => cannot_carry(links),
                Wake::Traffic => break None,
                Wake::Readable(Err(e)) => return lost(links, &stream, &e),
                Wake::Readable(Ok(())) => match stream.receive(links.spec.protocol) {
                    Readout::Data { pong } => awaiting_pong &= !pong,
                    Readout::Nothing => {}
                    Readout::Eof if links.spec.on_eof == OnEof::Hold => {
                        // Kept open (CLOSE_WAIT) until told to close: no more reads or pings
                        // (this also takes back a ping rung meanwhile).
                        lifecycle = Lifecycle::PeerClosed;
                        links.bell.ping_at(None);
                        links.send(Event::PeerClosed);
                    }
                    Readout::Eof => {
                        links.send(Event::Lost { kind: ErrorKind::ClosedByPeer, errno: None });
                        return Some(stream.tcp().local_addr().ok());
                    }
                    Readout::Failed(e) => return lost(links, &stream, &e),
                    Readout::Disconnected { reason } => {
                        let errno = Some(i32::from(reason));
                        links.send(Event::Lost { kind: ErrorKind::ServerDisconnect, errno });
                        return Some(stream.tcp().local_addr().ok());
                    }
                    Readout::Auth { .. } => {
                        // Never asked for: say so (protocol error) and close; to a 3.1.1
                        // broker, whose packet type 15 is reserved, close without a word.
                        if links.spec.mqtt.v5.is_some() {
                            let _ = stream.try_write(&disconnect_v5(PROTOCOL_ERROR));
                        }
                        links.send(Event::Lost { kind: ErrorKind::AuthReceived, errno: None });
                        return Some(stream.tcp().local_addr().ok());
                    }
                },
                Wake::Ping if awaiting_pong => {
                    links.send(Event::Lost { kind: ErrorKind::PingTimeout, errno: None });
                    return Some(stream.tcp().local_addr().ok());
                }
                Wake::Ping => {
                    // Two bytes into an idle socket's send buffer: no await needed. A full
                    // buffer means the target stopped reading; the next tick tells.
                    // Rung only where the protocol has a ping (see above).
                    let ping = links.spec.protocol.ping().unwrap_or_default();
                    match stream.try_write(ping) {
                        Ok(_) => awaiting_pong = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return lost(links, &stream, &e),
                    }
                    links.bell.pinged(links.spec.keep_alive());
                }
            }
        };
        // Out of the loop, so that nothing of it is kept across these awaits.
        match close_order {
            Some(cmd) => {
                Box::pin(close_held(stream, cmd, links)).await;
                None
            }
            // Subscribed or publishing from now on: its state lives in that box.
            None => match stream {
                Stream::Tcp(tcp) => Box::pin(active(tcp, links)).await,
                // Refused at plan time (traffic runs over TCP only): never rung here.
                other => {
                    cannot_carry(links);
                    Some(other.tcp().local_addr().ok())
                }
            },
        }
    }
}

fn lost(links: &Links, stream: &Stream, e: &io::Error) -> Option<Option<SocketAddr>> {
    links.lost(e);
    Some(stream.tcp().local_addr().ok())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::connection::ConnSpec;
    use crate::engine::worker::held::{self, HeldConnections};

    /// A target that answers nothing but sends without pause: the socket is always
    /// readable, and the keep-alive's ping and its timeout still come (holding must not
    /// read forever and never look at the ping).
    #[tokio::test]
    async fn a_target_that_streams_cannot_keep_the_ping_timeout_away() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let streamer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            // Not MQTT: bytes a held connection takes and ignores.
            let block = [0xffu8; 16 << 10];
            let until = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < until && peer.write_all(&block).is_ok() {}
        });
        let stream = Stream::Tcp(tokio::net::TcpStream::connect(addr).await.unwrap());
        let keep_alive = Duration::from_millis(200);
        let spec = ConnSpec::mqtt_for_tests(addr, keep_alive);
        let connections = Arc::new(HeldConnections::new());
        let (events, mut outcomes) = mpsc::unbounded_channel();
        let links = Links { spec, events, bell: connections.enlist(), stop: CancellationToken::new() };
        let ticks = tokio::spawn(held::keep_alive(Arc::downgrade(&connections), held::tick_period(keep_alive)));
        let holding = tokio::time::timeout(Duration::from_secs(5), hold(stream, &links)).await;
        assert!(holding.is_ok_and(|lost| lost.is_some()), "the hold ends, lost, within 5 s");
        ticks.abort();
        let outcome = outcomes.try_recv().expect("an outcome");
        assert!(matches!(outcome, Event::Lost { kind: ErrorKind::PingTimeout, .. }), "{outcome:?}");
        drop(links);
        streamer.join().unwrap();
    }

    /// Hold a connection whose peer sends `said` and then waits: the hold ends, lost, with
    /// the outcome it reports; returns what the peer read back.
    async fn held_against(said: &'static [u8]) -> (Event, Vec<u8>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            peer.write_all(said).unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut back = Vec::new();
            let _ = std::io::Read::read_to_end(&mut peer, &mut back);
            back
        });
        let stream = Stream::Tcp(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut spec = ConnSpec::mqtt_for_tests(addr, Duration::from_secs(60));
        Arc::get_mut(&mut spec).expect("not shared yet").mqtt.v5 = Some(Default::default());
        let connections = Arc::new(HeldConnections::new());
        let (events, mut outcomes) = mpsc::unbounded_channel();
        let links = Links { spec, events, bell: connections.enlist(), stop: CancellationToken::new() };
        let holding = tokio::time::timeout(Duration::from_secs(5), hold(stream, &links)).await;
        assert!(holding.is_ok_and(|lost| lost.is_some()), "the hold ends, lost, within 5 s");
        (outcomes.try_recv().expect("an outcome"), peer.join().unwrap())
    }

    /// MQTT 5: the server's DISCONNECT ends the connection as a drop with its reason;
    /// its AUTH (never asked for) is answered with DISCONNECT 0x82 and a close.
    #[tokio::test]
    async fn the_servers_disconnect_and_auth_end_the_connection() {
        let (outcome, _) = held_against(&[0xE0, 1, 0x8E]).await;
        assert!(matches!(outcome, Event::Lost { kind: ErrorKind::ServerDisconnect, errno: Some(0x8E) }), "{outcome:?}");
        let (outcome, back) = held_against(&[0xF0, 2, 0x18, 0]).await;
        assert!(matches!(outcome, Event::Lost { kind: ErrorKind::AuthReceived, .. }), "{outcome:?}");
        assert_eq!(back, [0xE0, 1, 0x82], "DISCONNECT, protocol error, then the close");
    }
}
