//! What one phase has measured so far: events from the connection tasks folded into
//! counters and histograms. One collector per phase, owned by the engine loop, so no
//! locks: connection tasks only send [`Event`]s.

use tokio::time::Instant;

use super::connection::Event;
use crate::stats::{ErrorCounts, ErrorKind, Latency};

/// A phase's running measurements.
#[derive(Debug)]
pub struct Collector {
    pub connect: Latency,
    pub handshake: Latency,
    pub close: Latency,
    pub errors: ErrorCounts,
    /// Connections established (connect phases) or closes completed (close phases).
    pub succeeded: u64,
    /// Connect or close outcomes received (successes and failures).
    pub outcomes: u64,
    /// Established connections lost without sockcap closing them.
    pub drops: u64,
    /// When the last success arrived (for the achieved rate).
    pub last_success: Option<Instant>,
}

impl Default for Collector {
    fn default() -> Self {
        Collector::new()
    }
}

impl Collector {
    pub fn new() -> Collector {
        Collector {
            connect: Latency::new(),
            handshake: Latency::new(),
            close: Latency::new(),
            errors: ErrorCounts::default(),
            succeeded: 0,
            outcomes: 0,
            drops: 0,
            last_success: None,
        }
    }

    /// Fold one event in; returns the change in connections held open.
    pub fn record(&mut self, event: Event) -> i64 {
        match event {
            Event::Connected { connect_us, handshake_us } => {
                self.connect.record_us(connect_us);
                if let Some(us) = handshake_us {
                    self.handshake.record_us(us);
                }
                self.success();
                1
            }
            Event::ConnectFailed { kind, errno, connect_us } => {
                if let Some(us) = connect_us {
                    self.connect.record_us(us);
                }
                self.errors.record(kind, errno);
                self.outcomes += 1;
                0
            }
            Event::Lost { kind, errno } => {
                self.errors.record(kind, errno);
                self.drops += 1;
                -1
            }
            Event::Closed { close_us, error } => {
                self.close.record_us(close_us);
                match error {
                    Some((kind, errno)) => {
                        self.errors.record(kind, errno);
                        self.outcomes += 1;
                    }
                    None => self.success(),
                }
                -1
            }
        }
    }

    fn success(&mut self) {
        self.succeeded += 1;
        self.outcomes += 1;
        self.last_success = Some(Instant::now());
    }

    pub fn failures(&self) -> u64 {
        self.errors.total()
    }

    /// Failures of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_counts() {
        let mut c = Collector::new();
        assert_eq!(c.record(Event::Connected { connect_us: 100, handshake_us: Some(300) }), 1);
        let failed = Event::ConnectFailed { kind: ErrorKind::ClosedBeforeConnack, errno: None, connect_us: Some(90) };
        assert_eq!(c.record(failed), 0);
        assert_eq!(c.record(Event::Lost { kind: ErrorKind::ClosedByPeer, errno: None }), -1);
        assert_eq!((c.succeeded, c.outcomes, c.drops, c.failures()), (1, 2, 1, 2));
        // a connect that ended before CONNACK still measured its TCP connect
        assert_eq!(c.connect.count(), 2);
        assert_eq!(c.handshake.count(), 1);
        assert_eq!(c.errors_of(ErrorKind::ClosedBeforeConnack), 1);
    }
}
