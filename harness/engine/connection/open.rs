//! Opening a connection: a handshake slot, the transport's dial (source port rules and
//! all, see [`crate::transport::tcp`]), the TLS handshake if the transport is TLS, then
//! the protocol's hello and the target's answer, all within the attempt's deadline; for
//! a churn cycle, the close at once.

use std::io;
use std::sync::atomic::Ordering;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::close::close;
use super::command::CloseCommand;
use super::links::{micros_since, Attempt, ConnSpec, Event};
use crate::failure::ErrorKind;
use crate::protocol::session::{Answer, Hello};
use crate::transport::{DialError, DialStep, Stream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Connect and handshake; for a churn cycle, close at once. Returns the stream to hold,
/// if there is one.
pub(super) async fn open_or_churn(
    spec: &ConnSpec,
    attempt: Box<Attempt>,
    events: &mpsc::UnboundedSender<Event>,
    stop: &CancellationToken,
) -> Option<Stream> {
    // The task runs for the first time: how late the generator is on its schedule.
    let late_us = micros_since(attempt.scheduled);
    let opened = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        opened = open_within_deadline(spec, &attempt, events) => opened,
    };
    let (stream, permit) = match opened {
        Ok(Opened { stream, permit, started, connect_us, tls_us, resumed, ws_us, handshake_us }) => {
            let _ =
                events.send(Event::Connected { started, connect_us, tls_us, resumed, ws_us, handshake_us, late_us });
            (stream, permit)
        }
        Err(failure) => {
            let _ = events.send(Event::ConnectFailed {
                kind: failure.kind,
                errno: failure.errno,
                connect_us: failure.connect_us,
                late_us,
            });
            return None;
        }
    };
    // A churn cycle keeps its slot through the close; a held connection frees it now.
    if let Some(cmd) = attempt.then_close {
        let cmd = CloseCommand { scheduled: Instant::now(), ..cmd };
        // Boxed: it would otherwise take space in every connecting future.
        let (close_us, error, _) = Box::pin(close(stream, cmd, spec.protocol)).await;
        let _ = events.send(Event::Closed { close_us, error });
        drop(permit);
        return None;
    }
    drop(permit);
    Some(stream)
}

/// Why an attempt failed, and how far it got.
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    pub(super) errno: Option<i32>,
    connect_us: Option<u64>,
}

impl Failure {
    fn new(kind: ErrorKind, connect_us: Option<u64>) -> Failure {
        Failure { kind, errno: None, connect_us }
    }

    fn io(err: &io::Error, connect_us: Option<u64>) -> Failure {
        let (kind, errno) = ErrorKind::classify(err);
        Failure { kind, errno, connect_us }
    }

    /// A TLS handshake that failed (see [`crate::transport::tls::classify`]).
    fn tls(err: &io::Error, connect_us: u64) -> Failure {
        let (kind, errno) = crate::transport::tls::classify(err);
        Failure { kind, errno, connect_us: Some(connect_us) }
    }

    /// A dial that failed. EADDRNOTAVAIL at bind is a source address that is not this
    /// machine's (any more), not the ports running out: counted `other` with its errno,
    /// which the findings name.
    fn dial(err: &DialError) -> Failure {
        match (err.step, err.error.raw_os_error()) {
            (DialStep::Bind, Some(libc::EADDRNOTAVAIL)) => {
                Failure { kind: ErrorKind::Other, errno: Some(libc::EADDRNOTAVAIL), connect_us: None }
            }
            _ => Failure::io(&err.error, None),
        }
    }
}

/// A connection open and its handshakes done, with the slot it holds (`max_inflight`),
/// and its latencies from the scheduled instant (see [`Event::Connected`]).
pub(super) struct Opened {
    pub stream: Stream,
    permit: OwnedSemaphorePermit,
    started: Instant,
    connect_us: u64,
    tls_us: Option<u64>,
    resumed: bool,
    ws_us: Option<u64>,
    handshake_us: Option<u64>,
}

pub(super) async fn open_within_deadline(
    spec: &ConnSpec,
    attempt: &Attempt,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<Opened, Failure> {
    // Waiting for a handshake slot counts against the deadline: the clock runs from the
    // scheduled instant whatever holds the connection up.
    let connecting = async {
        let Ok(permit) = attempt.permits.clone().acquire_owned().await else {
            return Err(Failure::io(&io::Error::other("the run is ending"), None));
        };
        let port_taken = || {
            let _ = events.send(Event::PortTaken);
        };
        let dialled = spec.transport().dial(spec.target, attempt.source, spec.sndbuf, port_taken).await;
        dialled.map(|(stream, started)| (stream, started, permit)).map_err(|e| Failure::dial(&e))
    };
    let (tcp, started, permit) = match timeout_at(attempt.deadline, connecting).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => return Err(failure),
        Err(_) => return Err(Failure::new(ErrorKind::TimedOut, None)),
    };
    let connect_us = micros_since(attempt.scheduled);
    let (stream, tls_us, resumed) = match &spec.tls {
        None => (Stream::Tcp(tcp), None, false),
        Some(tls) => match timeout_at(attempt.deadline, tls.handshake(tcp)).await {
            Ok(Ok((tls, resumed))) => (Stream::Tls(Box::new(tls)), Some(micros_since(attempt.scheduled)), resumed),
            Ok(Err(e)) => return Err(Failure::tls(&e, connect_us)),
            Err(_) => return Err(Failure::new(ErrorKind::TlsHandshake, Some(connect_us))),
        },
    };
    let (mut stream, ws_us) = match &spec.ws {
        None => (stream, None),
        Some(ws) => match timeout_at(attempt.deadline, ws.upgrade(stream)).await {
            Ok(Ok(ws)) => (Stream::Ws(Box::new(ws)), Some(micros_since(attempt.scheduled))),
            Ok(Err(e)) => {
                let (kind, errno) = crate::transport::ws::classify(&e);
                return Err(Failure { kind, errno, connect_us: Some(connect_us) });
            }
            Err(_) => return Err(Failure::new(ErrorKind::WsUpgrade, Some(connect_us))),
        },
    };
    let opened =
        |stream, handshake_us| Opened { stream, permit, started, connect_us, tls_us, resumed, ws_us, handshake_us };
    if !spec.protocol.greets() {
        return Ok(opened(stream, None));
    }
    match timeout_at(attempt.deadline, handshake(&mut stream, spec, attempt.n)).await {
        Ok(Ok(())) => Ok(opened(stream, Some(micros_since(attempt.scheduled)))),
        Ok(Err(failure)) => Err(Failure { connect_us: Some(connect_us), ..failure }),
        Err(_) => Err(Failure::new(ErrorKind::ConnackTimeout, Some(connect_us))),
    }
}

fn client_id(template: &str, worker: u32, n: u64) -> String {
    template.replace("{worker}", &worker.to_string()).replace("{n}", &n.to_string())
}

/// Send the protocol's hello and read until its answer (a CONNACK for MQTT) is whole.
/// The answer is read into a stack array here, which this future (boxed, and gone once
/// connected) holds across its awaits: 256 bytes, room for an MQTT 5 CONNACK's
/// properties (an assigned client id, a reason string).
async fn handshake(stream: &mut Stream, spec: &ConnSpec, n: u64) -> Result<(), Failure> {
    let id = client_id(&spec.mqtt.client_id, spec.worker, n);
    let mut packet = Vec::new();
    spec.protocol.hello(
        &Hello {
            v5: spec.mqtt.v5.as_ref(),
            client_id: &id,
            keep_alive_s: spec.mqtt.keep_alive.as_secs() as u16,
            clean_session: spec.mqtt.clean_session,
            username: spec.mqtt.username.as_deref(),
            password: spec.mqtt.password.as_deref().map(str::as_bytes),
        },
        &mut packet,
    );
    // Over TLS 1.3 the target judges a client certificate after the client's side of the
    // handshake is done: its refusal (an alert) comes with the first read or write.
    let tls =
        matches!(stream, Stream::Tls(_)) || matches!(stream, Stream::Ws(ws) if matches!(ws.get_ref(), Stream::Tls(_)));
    let failed = |e: &io::Error| if tls { Failure::tls(e, 0) } else { Failure::io(e, None) };
    stream.write_all(&packet).await.map_err(|e| failed(&e))?;
    drop(packet);
    let mut buf = [0u8; 256];
    let mut filled = 0;
    loop {
        let read = match stream {
            Stream::Tcp(tcp) => {
                tcp.readable().await.map_err(|e| Failure::io(&e, None))?;
                tcp.try_read(&mut buf[filled..])
            }
            Stream::Tls(tls) => match tls.read(&mut buf[filled..]).await {
                // The target's EOF without close_notify, before its answer.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                read => read,
            },
            Stream::Ws(ws) => read_message(ws, &mut buf[filled..]).await,
        };
        match read {
            Ok(0) => return Err(Failure::new(ErrorKind::ClosedBeforeConnack, None)),
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                let mut failure = failed(&e);
                if failure.kind == ErrorKind::Reset && filled == 0 {
                    // A reset before the target sent anything is the symptom of an EOF: it
                    // closed without reading our hello (unread data turns its close into a
                    // RST). After it sent bytes, a reset is a reset.
                    failure.kind = ErrorKind::ClosedBeforeConnack;
                }
                return Err(failure);
            }
        }
        match spec.protocol.answer(&buf[..filled]) {
            Answer::Incomplete if filled < buf.len() => continue,
            Answer::Accepted { server_keep_alive_s } => {
                if let Some(s) = server_keep_alive_s {
                    spec.server_keep_alive_s.store(u32::from(s), Ordering::Relaxed);
                }
                return Ok(());
            }
            Answer::Refused { code } => {
                // The code goes where an errno would: ErrorCounts counts it by name.
                let failure =
                    Failure { kind: ErrorKind::ConnackRefused, errno: Some(i32::from(code)), connect_us: None };
                return Err(failure);
            }
            Answer::Incomplete | Answer::Unexpected => return Err(Failure::new(ErrorKind::Protocol, None)),
        }
    }
}

/// The next binary message's bytes (as many as `buf` takes); `Ok(0)`: the target closed.
async fn read_message(ws: &mut WebSocketStream<Stream>, buf: &mut [u8]) -> io::Result<usize> {
    use futures_util::StreamExt;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                return Ok(n);
            }
            Some(Ok(Message::Close(_))) | None => return Ok(0),
            Some(Ok(_)) => {}
            Some(Err(e)) => match crate::transport::ws_io_error(e) {
                e if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                e => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_address_bind_refuses_is_not_the_ports_running_out() {
        let unavailable = || io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        let at_bind = Failure::dial(&DialError::new(DialStep::Bind, unavailable()));
        assert_eq!((at_bind.kind, at_bind.errno), (ErrorKind::Other, Some(libc::EADDRNOTAVAIL)));
        let at_connect = Failure::dial(&DialError::new(DialStep::Connect, unavailable()));
        assert_eq!((at_connect.kind, at_connect.errno), (ErrorKind::AddrNotAvailable, None));
    }

    #[test]
    fn client_ids_fill_the_template() {
        assert_eq!(client_id("sockcap-{worker}-{n}", 2, 41), "sockcap-2-41");
    }
}
