//! One client connection as a task: connect, handshake, hold (keep-alive, drop
//! detection), close in the mode asked for. Everything it measures goes to the
//! engine as an [`Event`]; it never holds a buffer across an idle await (it waits
//! on `readable()` and reads into a small stack array).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use crate::plan::{CloseMode, MqttOptions};
use crate::protocol::{mqtt, Protocol};
use crate::stats::ErrorKind;
use crate::target::OnEof;

/// What every connection of a run shares.
#[derive(Debug)]
pub struct ConnSpec {
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub mqtt: MqttOptions,
    /// The worker index substituted for `{worker}` in client ids.
    pub worker: u32,
    /// What a held connection does when the target closes it.
    pub on_eof: OnEof,
    /// SO_SNDBUF for every socket, when a phase fills send buffers: a small fixed buffer
    /// instead of autotuning's up to 4 MiB per connection.
    pub sndbuf: Option<u32>,
}

/// A connection's outcome or a change of its state, sent to the engine.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Connected, and (MQTT) CONNACK accepted. Latencies from the scheduled instant.
    /// `started`: when connect() was called (the kernel picked the source port then).
    Connected { started: Instant, connect_us: u64, handshake_us: Option<u64> },
    /// The connection never became usable.
    /// `started`: when connect() was called, if it was.
    ConnectFailed { started: Option<Instant>, kind: ErrorKind, errno: Option<i32>, connect_us: Option<u64> },
    /// An established connection was lost without sockcap closing it.
    Lost { kind: ErrorKind, errno: Option<i32> },
    /// The target closed a connection that the client keeps open (CLOSE_WAIT).
    PeerClosed,
    /// A close asked for by the engine finished (`error` when it did not go as the mode expects).
    Closed { close_us: u64, error: Option<(ErrorKind, Option<i32>)> },
}

/// The engine's order to close, sent once per connection.
#[derive(Debug, Clone, Copy)]
pub struct CloseCommand {
    pub how: CloseMode,
    /// The close's scheduled instant: close latency is measured from here.
    pub scheduled: Instant,
    /// How long to wait for the target's FIN where the mode waits for one.
    pub timeout: Duration,
    /// Write until the send buffer is full first.
    pub fill: bool,
}

/// One connection attempt, as the pacer schedules it.
#[derive(Debug)]
pub struct Attempt {
    /// Connection number within the run (for the client id).
    pub n: u64,
    pub scheduled: Instant,
    /// Scheduled instant plus the handshake timeout.
    pub deadline: Instant,
    /// The local address and port to bind (see [`crate::sources`]); port 0: the kernel
    /// picks the port at connect; `None`: the kernel picks both.
    pub source: Option<SocketAddr>,
    /// Close as soon as connected (a churn cycle); `scheduled` is replaced by that instant.
    pub then_close: Option<CloseCommand>,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Established and (MQTT) accepted; keep-alive running.
    Held,
    /// Half-closed by sockcap; reading until the target closes.
    HalfClosed,
    /// Closed by the target and kept open by the client (CLOSE_WAIT) until told to close.
    PeerClosed,
}

/// Run one connection from its scheduled connect to its end.
///
/// The attempt and the semaphore come boxed and are dropped once connected: an async
/// fn keeps its arguments' space for its whole life, and a held connection should not
/// carry what only connecting needs.
pub async fn run(
    spec: Arc<ConnSpec>,
    attempt: Box<Attempt>,
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
    close_rx: oneshot::Receiver<CloseCommand>,
    stop: CancellationToken,
) {
    let Some(stream) = Box::pin(open_or_churn(&spec, *attempt, permits, &events, &stop)).await else { return };
    hold(stream, &spec, &events, close_rx, &stop).await;
}

/// Connect and handshake; for a churn cycle, close at once. Returns the stream to hold,
/// if there is one.
async fn open_or_churn(
    spec: &ConnSpec,
    attempt: Attempt,
    permits: Arc<Semaphore>,
    events: &mpsc::UnboundedSender<Event>,
    stop: &CancellationToken,
) -> Option<TcpStream> {
    let opened = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        opened = open_within_deadline(spec, &attempt, permits) => opened,
    };
    let (mut stream, permit) = match opened {
        Ok((stream, permit, started, connect_us, handshake_us)) => {
            let _ = events.send(Event::Connected { started, connect_us, handshake_us });
            (stream, permit)
        }
        Err(failure) => {
            let _ = events.send(Event::ConnectFailed {
                started: failure.started,
                kind: failure.kind,
                errno: failure.errno,
                connect_us: failure.connect_us,
            });
            return None;
        }
    };
    // A churn cycle keeps its slot through the close; a held connection frees it now.
    if let Some(cmd) = attempt.then_close {
        let cmd = CloseCommand { scheduled: Instant::now(), ..cmd };
        let (close_us, error) = close(&mut stream, cmd).await;
        let _ = events.send(Event::Closed { close_us, error });
        drop(permit);
        return None;
    }
    drop(permit);
    Some(stream)
}

/// Why an attempt failed, and how far it got.
struct Failure {
    kind: ErrorKind,
    errno: Option<i32>,
    connect_us: Option<u64>,
    /// When connect() was called, if it was.
    started: Option<Instant>,
}

impl Failure {
    fn new(kind: ErrorKind, connect_us: Option<u64>) -> Failure {
        Failure { kind, errno: None, connect_us, started: None }
    }

    fn io(err: &io::Error, connect_us: Option<u64>) -> Failure {
        let (kind, errno) = ErrorKind::classify(err);
        Failure { kind, errno, connect_us, started: None }
    }
}

fn micros_since(start: Instant) -> u64 {
    Instant::now().saturating_duration_since(start).as_micros() as u64
}

/// A connection open and its handshake done, with the slot it holds (`max_inflight`).
type Opened = (TcpStream, OwnedSemaphorePermit, Instant, u64, Option<u64>);

async fn open_within_deadline(spec: &ConnSpec, attempt: &Attempt, permits: Arc<Semaphore>) -> Result<Opened, Failure> {
    // Waiting for a handshake slot counts against the deadline: the clock runs from the
    // scheduled instant whatever holds the connection up.
    let connecting = async {
        let Ok(permit) = permits.acquire_owned().await else {
            return Err((io::Error::other("the run is ending"), None));
        };
        connect(spec, attempt).await.map(|(stream, started)| (stream, started, permit))
    };
    let (stream, started, permit) = match timeout_at(attempt.deadline, connecting).await {
        Ok(Ok(opened)) => opened,
        Ok(Err((e, started))) => return Err(Failure { started, ..Failure::io(&e, None) }),
        // (a connect that timed out may or may not have held a port: not counted as started)
        Err(_) => return Err(Failure::new(ErrorKind::TimedOut, None)),
    };
    let connect_us = micros_since(attempt.scheduled);
    if spec.protocol == Protocol::Tcp {
        return Ok((stream, permit, started, connect_us, None));
    }
    match timeout_at(attempt.deadline, mqtt_handshake(&stream, spec, attempt.n)).await {
        Ok(Ok(())) => Ok((stream, permit, started, connect_us, Some(micros_since(attempt.scheduled)))),
        Ok(Err(failure)) => Err(Failure { connect_us: Some(connect_us), started: Some(started), ..failure }),
        Err(_) => Err(Failure { started: Some(started), ..Failure::new(ErrorKind::ConnackTimeout, Some(connect_us)) }),
    }
}

/// Open the socket and connect; returns (or fails with) the instant connect() was called.
async fn connect(spec: &ConnSpec, attempt: &Attempt) -> Result<(TcpStream, Instant), (io::Error, Option<Instant>)> {
    let socket = open_socket(spec, attempt).map_err(|e| (e, None))?;
    let started = Instant::now();
    match socket.connect(spec.target).await {
        Ok(stream) => {
            stream.set_nodelay(true).map_err(|e| (e, Some(started)))?;
            Ok((stream, started))
        }
        Err(e) => Err((e, Some(started))),
    }
}

/// A socket ready to connect: buffer size and source address set.
fn open_socket(spec: &ConnSpec, attempt: &Attempt) -> io::Result<TcpSocket> {
    let socket = match spec.target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(bytes) = spec.sndbuf {
        socket.set_send_buffer_size(bytes)?;
    }
    match attempt.source {
        // The kernel picks the port at connect time, for the full 4-tuple: never
        // bind(port 0) without IP_BIND_ADDRESS_NO_PORT.
        Some(local) if local.port() == 0 => {
            crate::socket::set_int_option(&socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
            socket.bind(local)?;
        }
        // A port sockcap chose itself: the connect rate stays flat however full the
        // range is, where the kernel's own search slows past half of it. SO_REUSEADDR
        // lets the same (address, port) serve other destinations.
        Some(local) => {
            socket.set_reuseaddr(true)?;
            socket.bind(local)?;
        }
        None => {}
    }
    Ok(socket)
}

fn client_id(template: &str, worker: u32, n: u64) -> String {
    template.replace("{worker}", &worker.to_string()).replace("{n}", &n.to_string())
}

async fn mqtt_handshake(stream: &TcpStream, spec: &ConnSpec, n: u64) -> Result<(), Failure> {
    let id = client_id(&spec.mqtt.client_id, spec.worker, n);
    let mut packet = Vec::with_capacity(32 + id.len());
    mqtt::encode_connect(
        &mqtt::Connect {
            client_id: &id,
            keep_alive_s: spec.mqtt.keep_alive.as_secs() as u16,
            clean_session: spec.mqtt.clean_session,
            username: spec.mqtt.username.as_deref(),
            password: spec.mqtt.password.as_deref().map(str::as_bytes),
        },
        &mut packet,
    );
    write_all(stream, &packet).await.map_err(|e| Failure::io(&e, None))?;
    drop(packet);
    let mut buf = [0u8; 64];
    let mut filled = 0;
    loop {
        stream.readable().await.map_err(|e| Failure::io(&e, None))?;
        match stream.try_read(&mut buf[filled..]) {
            Ok(0) => return Err(Failure::new(ErrorKind::ClosedBeforeConnack, None)),
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                let mut failure = Failure::io(&e, None);
                if failure.kind == ErrorKind::Reset {
                    // A reset before any CONNACK is the same symptom as an EOF: the broker dropped us.
                    failure.kind = ErrorKind::ClosedBeforeConnack;
                }
                return Err(failure);
            }
        }
        match mqtt::decode(&buf[..filled]) {
            Ok(None) if filled < buf.len() => continue,
            Ok(Some((mqtt::Packet::ConnAck { code: 0, .. }, _))) => return Ok(()),
            Ok(Some((mqtt::Packet::ConnAck { .. }, _))) => return Err(Failure::new(ErrorKind::ConnackRefused, None)),
            _ => return Err(Failure::new(ErrorKind::Protocol, None)),
        }
    }
}

/// Write a short packet completely (it almost always fits the socket buffer at once).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a read while holding found.
enum Readout {
    Data { pong: bool },
    Eof,
    Nothing,
    Failed(io::Error),
}

fn read_available(stream: &TcpStream) -> Readout {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => Readout::Eof,
        // PINGRESP is the only packet a broker sends to an idle client of ours.
        Ok(n) => Readout::Data { pong: buf[..n].windows(2).any(|w| w == mqtt::PINGRESP) },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Readout::Nothing,
        Err(e) => Readout::Failed(e),
    }
}

async fn hold(
    mut stream: TcpStream,
    spec: &ConnSpec,
    events: &mpsc::UnboundedSender<Event>,
    mut close_rx: oneshot::Receiver<CloseCommand>,
    stop: &CancellationToken,
) {
    let keep_alive = spec.mqtt.keep_alive;
    let pinging = spec.protocol == Protocol::Mqtt && !keep_alive.is_zero();
    let mut next_ping = Instant::now() + keep_alive;
    let mut awaiting_pong = false;
    let mut lifecycle = Lifecycle::Held;
    let lost = |kind, errno| {
        let _ = events.send(Event::Lost { kind, errno });
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            cmd = &mut close_rx, if lifecycle != Lifecycle::HalfClosed => {
                let Ok(cmd) = cmd else { return };
                let close_us_error = Box::pin(close(&mut stream, cmd)).await;
                let _ = events.send(Event::Closed { close_us: close_us_error.0, error: close_us_error.1 });
                if cmd.how != CloseMode::HalfClose {
                    return;
                }
                lifecycle = Lifecycle::HalfClosed;
            }
            ready = stream.readable(), if lifecycle != Lifecycle::PeerClosed => {
                if let Err(e) = ready {
                    let (kind, errno) = ErrorKind::classify(&e);
                    return lost(kind, errno);
                }
                match (read_available(&stream), lifecycle) {
                    (Readout::Data { pong }, _) => awaiting_pong &= !pong,
                    (Readout::Nothing, _) => {}
                    // The target finished a half-close we started: done, quietly.
                    (Readout::Eof | Readout::Failed(_), Lifecycle::HalfClosed) => return,
                    (Readout::Eof, Lifecycle::Held) if spec.on_eof == OnEof::Hold => {
                        lifecycle = Lifecycle::PeerClosed;
                        let _ = events.send(Event::PeerClosed);
                    }
                    (Readout::Eof, _) => return lost(ErrorKind::ClosedByPeer, None),
                    (Readout::Failed(e), _) => {
                        let (kind, errno) = ErrorKind::classify(&e);
                        return lost(kind, errno);
                    }
                }
            }
            _ = sleep_until(next_ping), if pinging && lifecycle == Lifecycle::Held => {
                if awaiting_pong {
                    return lost(ErrorKind::PingTimeout, None);
                }
                // Two bytes into an idle socket's send buffer: no await needed. A full
                // buffer means the target stopped reading; the next tick tells.
                match stream.try_write(&mqtt::PINGREQ) {
                    Ok(_) => awaiting_pong = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        let (kind, errno) = ErrorKind::classify(&e);
                        return lost(kind, errno);
                    }
                }
                next_ping += keep_alive;
            }
        }
    }
}

/// Close as `cmd.how` says; returns the close latency and what went wrong, if anything.
async fn close(stream: &mut TcpStream, cmd: CloseCommand) -> (u64, Option<(ErrorKind, Option<i32>)>) {
    if cmd.fill {
        crate::socket::fill_send_buffer(stream).await;
    }
    let result = match cmd.how {
        // Linger 0 makes close() send RST at once; it never blocks.
        CloseMode::Rst => socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO)),
        CloseMode::HalfClose => stream.shutdown().await,
        CloseMode::Fin => match stream.shutdown().await {
            Ok(()) => wait_for_fin(stream, cmd).await,
            Err(e) => Err(e),
        },
        CloseMode::MqttDisconnect => match write_all(stream, &mqtt::DISCONNECT).await {
            Ok(()) => wait_for_fin(stream, cmd).await,
            Err(e) => Err(e),
        },
    };
    let close_us = micros_since(cmd.scheduled);
    (close_us, result.err().map(|e| classify_close_error(&e)))
}

fn classify_close_error(e: &io::Error) -> (ErrorKind, Option<i32>) {
    if e.kind() == io::ErrorKind::TimedOut {
        (ErrorKind::CloseTimeout, None)
    } else {
        ErrorKind::classify(e)
    }
}

/// Read (and discard) until the target's FIN arrives, or the close timeout passes.
async fn wait_for_fin(stream: &TcpStream, cmd: CloseCommand) -> io::Result<()> {
    let deadline = Instant::now().max(cmd.scheduled) + cmd.timeout;
    let wait = async {
        loop {
            stream.readable().await?;
            match read_available(stream) {
                Readout::Eof => return Ok(()),
                Readout::Failed(e) => return Err(e),
                Readout::Data { .. } | Readout::Nothing => {}
            }
        }
    };
    timeout_at(deadline, wait)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no FIN from the target")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_fill_the_template() {
        assert_eq!(client_id("sockcap-{worker}-{n}", 2, 41), "sockcap-2-41");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// A held connection's whole task state is this future (plus tokio's task header,
    /// the socket's registration and a oneshot): pin its size so it does not creep.
    #[test]
    fn connection_future_stays_under_budget() {
        let spec = Arc::new(ConnSpec {
            target: "127.0.0.1:9".parse().unwrap(),
            protocol: Protocol::Mqtt,
            mqtt: MqttOptions {
                client_id: "{n}".into(),
                keep_alive: Duration::from_secs(30),
                clean_session: true,
                username: None,
                password: None,
            },
            worker: 0,
            on_eof: OnEof::Close,
            sndbuf: None,
        });
        let now = Instant::now();
        let attempt = Box::new(Attempt { n: 0, scheduled: now, deadline: now, source: None, then_close: None });
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_close_tx, close_rx) = oneshot::channel();
        let fut = run(spec, attempt, Arc::new(Semaphore::new(1)), tx, close_rx, CancellationToken::new());
        let size = std::mem::size_of_val(&fut);
        // 680 bytes with tokio 1.54: connecting and closing are boxed, so this is the
        // hold loop (socket, close receiver, cancellation, readiness and keep-alive timer).
        assert!(size <= 720, "connection future is {size} bytes");
    }
}
