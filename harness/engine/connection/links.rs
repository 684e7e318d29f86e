//! What a connection task shares with its worker: the run's [`ConnSpec`], the
//! [`Attempt`] it was scheduled as, the [`Event`]s it reports, and its [`Links`] to the
//! worker for its whole life.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::command::CloseCommand;
use super::order::{TrafficEvent, TrafficOrder};
use crate::engine::worker::held::Bell;
use crate::failure::ErrorKind;
use crate::plan::{MqttOptions, ReconnectPolicy};
use crate::protocol::{OnEof, Protocol};
use crate::transport::{TlsClient, Transport, WsClient};

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
    /// How a lost connection comes back (`[client] reconnect`); `None`: it stays lost.
    pub reconnect: Option<ReconnectPolicy>,
    /// MQTT 5's Server Keep Alive, as the last CONNACK that had one told it (seconds;
    /// [`NO_SERVER_KEEP_ALIVE`]: none yet). One value for the worker, not one per
    /// connection: a broker tells every client the same, and a held connection's
    /// memory stays what it was.
    pub server_keep_alive_s: AtomicU32,
    /// The worker's TLS client (one rustls config for all its connections), when the
    /// transport is TLS.
    pub tls: Option<TlsClient>,
    /// The worker's WebSocket client, when the transport is `ws` or `wss`.
    pub ws: Option<WsClient>,
    /// The current phase's traffic order (subscribe, publish), for the connections the
    /// worker rings: one for the worker, not one per connection.
    pub traffic: Mutex<Option<Arc<TrafficOrder>>>,
}

/// [`ConnSpec::server_keep_alive_s`] before any CONNACK told one.
pub const NO_SERVER_KEEP_ALIVE: u32 = u32::MAX;

impl ConnSpec {
    /// The transport every connection runs over: TLS when the worker has a TLS client,
    /// WebSocket when it has a WebSocket client.
    pub fn transport(&self) -> Transport {
        match (self.tls.is_some(), self.ws.is_some()) {
            (false, false) => Transport::Tcp,
            (true, false) => Transport::Tls,
            (false, true) => Transport::Ws,
            (true, true) => Transport::Wss,
        }
    }

    /// The keep-alive a held connection pings at: the server's (MQTT 5's Server Keep
    /// Alive, which replaces the client's own) once a CONNACK told one, else the scenario's.
    pub fn keep_alive(&self) -> Duration {
        match self.server_keep_alive_s.load(Ordering::Relaxed) {
            NO_SERVER_KEEP_ALIVE => self.mqtt.keep_alive,
            s => Duration::from_secs(u64::from(s)),
        }
    }

    /// The connection tests' spec: MQTT toward `target` with client id `{n}`.
    #[cfg(test)]
    pub(super) fn mqtt_for_tests(target: SocketAddr, keep_alive: Duration) -> Arc<ConnSpec> {
        Arc::new(ConnSpec {
            target,
            protocol: Protocol::Mqtt,
            mqtt: MqttOptions {
                client_id: "{n}".into(),
                keep_alive,
                clean_session: true,
                username: None,
                password: None,
                v5: None,
            },
            worker: 0,
            on_eof: OnEof::Close,
            sndbuf: None,
            reconnect: None,
            server_keep_alive_s: AtomicU32::new(NO_SERVER_KEEP_ALIVE),
            tls: None,
            ws: None,
            traffic: Mutex::new(None),
        })
    }
}

/// A connection's outcome or a change of its state, sent to the engine.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Connected, and (MQTT) CONNACK accepted. Latencies from the scheduled instant:
    /// TCP established, TLS handshake done (TLS only; `resumed`: a resumed session),
    /// the protocol's answer. `started`: when connect() was called (the kernel picked
    /// the source port then).
    /// `ws_us`: the WebSocket upgrade answered (ws, wss).
    /// `late_us`, here and in `ConnectFailed`: from the scheduled instant to the
    /// attempt's task first running, how far behind its own schedule sockcap was.
    Connected {
        started: Instant,
        connect_us: u64,
        tls_us: Option<u64>,
        resumed: bool,
        ws_us: Option<u64>,
        handshake_us: Option<u64>,
        late_us: u64,
    },
    /// The connection never became usable.
    ConnectFailed { kind: ErrorKind, errno: Option<i32>, connect_us: Option<u64>, late_us: u64 },
    /// An established connection was lost without sockcap closing it. An error only
    /// when no reconnect policy brings it back (the collector knows which).
    Lost { kind: ErrorKind, errno: Option<i32> },
    /// The target closed a connection that the client keeps open (CLOSE_WAIT).
    PeerClosed,
    /// The source port sockcap chose was unusable (held by another program's socket that
    /// does not share it, or its 4-tuple already connected): the kernel chose this one's.
    PortTaken,
    /// A lost connection's reconnect attempt started (after its backoff).
    ReconnectAttempt,
    /// The worker's close order found the connection down, between its loss and its
    /// reconnect: it reconnects no more. A close outcome (the phase waits for one), not a
    /// change of what is held (its loss took it off).
    ClosedWhileDown,
    /// A lost connection is connected again (and, MQTT, its CONNACK accepted): held again.
    /// `recovery_us`: from its loss to now.
    Reconnected { recovery_us: u64 },
    /// A lost connection's reconnect attempt failed (it backs off and tries again).
    ReconnectFailed { kind: ErrorKind, errno: Option<i32> },
    /// A lost connection's attempts ran out (`max_attempts`): it stays lost.
    GaveUp,
    /// Traffic over a held MQTT connection (`subscribe`, `publish` phases).
    Traffic(TrafficEvent),
    /// A close asked for by the engine finished (`error` when it did not go as the mode expects).
    Closed { close_us: u64, error: Option<(ErrorKind, Option<i32>)> },
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
    /// The phase's handshake slots (`max_inflight`).
    pub permits: Arc<Semaphore>,
}

/// What a connection task keeps for its whole life: the worker's settings and its ties
/// to the worker. One value, so that holding needs one reference to it.
#[derive(Debug)]
pub struct Links {
    pub spec: Arc<ConnSpec>,
    /// Where its [`Event`]s go.
    pub events: mpsc::UnboundedSender<Event>,
    /// The worker's close and stop orders and keep-alive tick, once held.
    pub bell: Arc<Bell>,
    /// Cancelled when the run ends (while connecting, and after a half-close).
    pub stop: CancellationToken,
}

impl Links {
    pub(super) fn send(&self, event: Event) {
        // The worker gone means the run is over: nobody is left to count it.
        let _ = self.events.send(event);
    }

    /// The connection failed while established.
    pub(super) fn lost(&self, e: &io::Error) {
        let (kind, errno) = ErrorKind::classify(e);
        self.send(Event::Lost { kind, errno });
    }
}

/// Microseconds from `start` (a scheduled instant) to now: every latency an [`Event`] carries.
pub(super) fn micros_since(start: Instant) -> u64 {
    Instant::now().saturating_duration_since(start).as_micros() as u64
}
