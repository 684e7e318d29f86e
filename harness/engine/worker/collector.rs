//! What one phase has measured so far: events from the connection tasks folded into
//! counters and histograms. One collector per phase, owned by the engine loop, so no
//! locks: connection tasks only send [`Event`]s.

use tokio::time::Instant;

use crate::engine::connection::Event;
use crate::failure::{ErrorCounts, ErrorKind};
use crate::latency::Latency;

use super::recovery::Recoveries;
use super::tally::Tally;

/// A phase's running measurements.
#[derive(Debug)]
pub struct Collector {
    pub connect: Latency,
    /// The TLS handshake (transport `tls`).
    pub tls: Latency,
    /// The WebSocket upgrade (transport `ws`, `wss`).
    pub ws: Latency,
    pub handshake: Latency,
    pub close: Latency,
    /// How late connection attempts started (their task's first run) after their
    /// scheduled instants: sockcap's own delay.
    pub lateness: Latency,
    pub errors: ErrorCounts,
    /// Connections established (handshake done).
    pub connected: u64,
    /// Connection attempts that failed.
    pub connect_failed: u64,
    /// Closes that went as their mode expects.
    pub closed: u64,
    /// Closes that did not (timeout waiting for the target's FIN, reset, ...).
    pub close_failed: u64,
    /// Established connections lost without sockcap closing them.
    pub drops: u64,
    /// Reconnect attempts of lost connections (`[client] reconnect`).
    pub reconnect_attempts: u64,
    /// Lost connections connected again.
    pub reconnected: u64,
    /// Losses, returns (with their recovery times) and failed reconnect attempts.
    pub recoveries: Recoveries,
    /// Lost connections come back (`[client] reconnect`): a loss is no error, giving up is.
    reconnects: bool,
    /// Connections the target closed that the client keeps open (`[client] on_eof = "hold"`).
    pub peer_closed: u64,
    /// Connections whose chosen source port was taken (the kernel chose theirs).
    pub ports_taken: u64,
    /// TLS connections whose session was resumed (an abbreviated handshake).
    pub tls_resumed: u64,
    /// When the last connect or close success arrived (for the achieved rate).
    pub last_success: Option<Instant>,
    /// When the first EADDRNOTAVAIL of the phase was known (its event came).
    pub first_addr_not_available: Option<Instant>,
    /// Connections established whose connect() was called before the first
    /// EADDRNOTAVAIL was known (the ones that took the ports).
    pub connected_before_exhaustion: u64,
    /// When a connection whose connect() was called after the first EADDRNOTAVAIL was
    /// known was established: its port came back after the ports ran out. (Ordered by
    /// the failure's call instead, a connect called a moment after it but whose port
    /// search ran first, took the last port, and counted as a recovery.)
    pub recovered_at: Option<Instant>,
    /// Message figures (subscribe, publish, deliveries).
    pub messages: Tally,
    /// Successes in each [`TIMELINE_STEP`] since `start`.
    pub timeline: Vec<u32>,
    start: Instant,
}

/// The width of one [`Collector::timeline`] bucket.
pub const TIMELINE_STEP: std::time::Duration = std::time::Duration::from_millis(100);

impl Collector {
    /// A collector for a phase that starts at `start`; `reconnects`: the run has a
    /// reconnect policy.
    pub fn new(start: Instant, reconnects: bool) -> Collector {
        Collector {
            connect: Latency::new(),
            tls: Latency::new(),
            ws: Latency::new(),
            handshake: Latency::new(),
            close: Latency::new(),
            lateness: Latency::new(),
            errors: ErrorCounts::default(),
            connected: 0,
            connect_failed: 0,
            closed: 0,
            close_failed: 0,
            drops: 0,
            reconnect_attempts: 0,
            reconnected: 0,
            recoveries: Recoveries::new(start),
            reconnects,
            peer_closed: 0,
            ports_taken: 0,
            tls_resumed: 0,
            last_success: None,
            first_addr_not_available: None,
            connected_before_exhaustion: 0,
            recovered_at: None,
            timeline: Vec::new(),
            messages: Tally::new(start),
            start,
        }
    }

    /// A success now: the achieved rate's clock and the timeline.
    fn succeeded_now(&mut self) {
        let now = Instant::now();
        self.last_success = Some(now);
        let bucket = (now.saturating_duration_since(self.start).as_millis() / TIMELINE_STEP.as_millis()) as usize;
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] += 1;
    }

    /// Fold one event in; returns the change in connections held open.
    pub fn record(&mut self, event: Event) -> i64 {
        match event {
            Event::Connected { started, connect_us, tls_us, resumed, ws_us, handshake_us, late_us } => {
                self.lateness.record_us(late_us);
                if let Some(us) = ws_us {
                    self.ws.record_us(us);
                }
                self.connect.record_us(connect_us);
                if let Some(us) = tls_us {
                    self.tls.record_us(us);
                }
                self.tls_resumed += u64::from(resumed);
                if let Some(us) = handshake_us {
                    self.handshake.record_us(us);
                }
                self.connected += 1;
                self.succeeded_now();
                match self.first_addr_not_available {
                    None => self.connected_before_exhaustion += 1,
                    Some(known) if started < known => self.connected_before_exhaustion += 1,
                    // Connects under way when the ports ran out say nothing of recovery.
                    Some(_) if self.recovered_at.is_none() => self.recovered_at = self.last_success,
                    Some(_) => {}
                }
                1
            }
            Event::ConnectFailed { kind, errno, connect_us, late_us } => {
                self.lateness.record_us(late_us);
                if let Some(us) = connect_us {
                    self.connect.record_us(us);
                }
                self.errors.record(kind, errno);
                self.connect_failed += 1;
                if kind == ErrorKind::AddrNotAvailable && self.first_addr_not_available.is_none() {
                    self.first_addr_not_available = Some(Instant::now());
                }
                0
            }
            Event::Lost { kind, errno } => {
                // With a reconnect policy a loss is the start of a recovery: an error only
                // when the connection is given up (`GaveUp`).
                if !self.reconnects {
                    self.errors.record(kind, errno);
                }
                self.drops += 1;
                self.recoveries.lost(kind);
                -1
            }
            Event::ReconnectFailed { kind, errno } => {
                self.recoveries.refused(kind, errno);
                0
            }
            Event::GaveUp => {
                self.errors.record(ErrorKind::ReconnectGaveUp, None);
                0
            }
            Event::ReconnectAttempt => {
                self.reconnect_attempts += 1;
                0
            }
            // Nothing left to close: its loss took it off the count already.
            Event::ClosedWhileDown => {
                self.closed += 1;
                0
            }
            // Held again: its loss took it off the count.
            Event::Reconnected { recovery_us } => {
                self.reconnected += 1;
                self.recoveries.back(recovery_us);
                1
            }
            Event::PeerClosed => {
                self.peer_closed += 1;
                0
            }
            Event::PortTaken => {
                self.ports_taken += 1;
                0
            }
            Event::Traffic(traffic) => {
                self.messages.record(traffic);
                0
            }
            Event::Closed { close_us, error } => {
                self.close.record_us(close_us);
                match error {
                    Some((kind, errno)) => {
                        self.errors.record(kind, errno);
                        self.close_failed += 1;
                    }
                    None => {
                        self.closed += 1;
                        self.succeeded_now();
                    }
                }
                -1
            }
        }
    }

    /// Connect outcomes received, successes and failures.
    pub fn connect_outcomes(&self) -> u64 {
        self.connected + self.connect_failed
    }

    /// Close outcomes received, successes and failures.
    pub fn close_outcomes(&self) -> u64 {
        self.closed + self.close_failed
    }

    pub fn failures(&self) -> u64 {
        self.errors.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_holds_the_connection_again() {
        let mut c = Collector::new(Instant::now(), true);
        assert_eq!(c.record(Event::Lost { kind: ErrorKind::Reset, errno: None }), -1);
        assert_eq!(c.record(Event::ReconnectAttempt), 0);
        assert_eq!(c.record(Event::ReconnectFailed { kind: ErrorKind::Refused, errno: None }), 0);
        assert_eq!(c.record(Event::ReconnectAttempt), 0);
        assert_eq!(c.record(Event::Reconnected { recovery_us: 120_000 }), 1);
        assert_eq!((c.drops, c.reconnect_attempts, c.reconnected), (1, 2, 1));
        assert_eq!(c.failures(), 0, "a loss that comes back and its refusals are no errors");
        let recovery = c.recoveries.report().unwrap();
        assert_eq!((recovery.lost, recovery.recovered, recovery.refusals["refused"]), (1, 1, 1));
        // Given up after its attempts: that is an error.
        assert_eq!(c.record(Event::Lost { kind: ErrorKind::Reset, errno: None }), -1);
        assert_eq!(c.record(Event::GaveUp), 0);
        assert_eq!((c.failures(), c.errors.get(ErrorKind::ReconnectGaveUp)), (1, 1));
        // Lost again, and told to close before it is back: a close outcome, held unchanged.
        assert_eq!(c.record(Event::Lost { kind: ErrorKind::Reset, errno: None }), -1);
        assert_eq!(c.record(Event::ClosedWhileDown), 0);
        assert_eq!(c.close_outcomes(), 1);
        assert_eq!(c.failures(), 1, "only the one given up");
    }

    #[test]
    fn events_fold_into_counts() {
        let mut c = Collector::new(Instant::now(), false);
        assert_eq!(
            c.record(Event::Connected {
                started: Instant::now(),
                connect_us: 100,
                tls_us: None,
                resumed: false,
                ws_us: None,
                handshake_us: Some(300),
                late_us: 5
            }),
            1
        );
        let failed = Event::ConnectFailed {
            kind: ErrorKind::ClosedBeforeConnack,
            errno: None,
            connect_us: Some(90),
            late_us: 5,
        };
        assert_eq!(c.record(failed), 0);
        assert_eq!(c.record(Event::Lost { kind: ErrorKind::ClosedByPeer, errno: None }), -1);
        assert_eq!((c.connected, c.connect_outcomes(), c.drops, c.failures()), (1, 2, 1, 2));
        // a connect that ended before CONNACK still measured its TCP connect
        assert_eq!(c.connect.count(), 2);
        assert_eq!(c.handshake.count(), 1);
        assert_eq!(c.errors.get(ErrorKind::ClosedBeforeConnack), 1);
        assert_eq!(c.timeline, vec![1], "one success in the first 100 ms");
    }

    #[test]
    fn exhaustion_and_recovery_are_noted() {
        let mut c = Collector::new(Instant::now(), false);
        c.record(Event::Connected {
            started: Instant::now(),
            connect_us: 10,
            tls_us: None,
            resumed: false,
            ws_us: None,
            handshake_us: None,
            late_us: 5,
        });
        c.record(Event::Closed { close_us: 10, error: None });
        let eaddr =
            Event::ConnectFailed { kind: ErrorKind::AddrNotAvailable, errno: None, connect_us: None, late_us: 5 };
        // Called after the failing connect() was, but its port search ran first: it took
        // the last port, before the failure was known.
        let meanwhile = Instant::now();
        c.record(eaddr);
        c.record(eaddr);
        assert_eq!(c.connected_before_exhaustion, 1);
        assert!(c.recovered_at.is_none());
        c.record(Event::Connected {
            started: meanwhile,
            connect_us: 10,
            tls_us: None,
            resumed: false,
            ws_us: None,
            handshake_us: None,
            late_us: 5,
        });
        assert_eq!(c.connected_before_exhaustion, 2);
        assert!(c.recovered_at.is_none(), "the last port taken is no recovery");
        // a connect started before the ports ran out is no sign of recovery
        let early = Instant::now() - std::time::Duration::from_secs(1);
        c.record(Event::Connected {
            started: early,
            connect_us: 10,
            tls_us: None,
            resumed: false,
            ws_us: None,
            handshake_us: None,
            late_us: 5,
        });
        assert!(c.recovered_at.is_none());
        c.record(Event::Connected {
            started: Instant::now(),
            connect_us: 10,
            tls_us: None,
            resumed: false,
            ws_us: None,
            handshake_us: None,
            late_us: 5,
        });
        assert!(c.recovered_at.is_some());
        assert_eq!((c.closed, c.close_outcomes()), (1, 1));
    }
}
