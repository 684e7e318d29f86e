//! What a phase does between its start and its end, as a value the engine's one loop
//! drives: start connections on a schedule (connect, churn), send close orders on a
//! schedule (close), or wait (hold, sleep). Policies are data here, not one function
//! per combination.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::collector::Collector;
use super::pacing::Pacer;
use crate::engine::connection::CloseCommand;
use crate::plan::{Action, CloseAmount, CloseMode, DEFAULT_MAX_INFLIGHT};
use crate::shard::Shard;
use crate::sources::Sources;

/// How long past its last deadline, and past the last event, a phase waits for outcomes
/// that never came (a guard: every connection task reports within its own timeouts,
/// but a starved CPU can delay the reports).
pub const GRACE: Duration = Duration::from_secs(5);
/// Close timeout of churn cycles that wait for the target's FIN.
const CHURN_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A phase in progress.
#[derive(Debug)]
pub enum ActionDriver {
    /// Start connections (connect and churn phases).
    Connect {
        pacer: Pacer,
        /// From each connection's scheduled instant to its finished handshake.
        timeout: Duration,
        permits: Arc<Semaphore>,
        /// Wait for every outcome before the phase ends.
        wait: bool,
        /// Churn: close each connection as soon as it is established.
        then_close: Option<CloseCommand>,
        /// Where each connection binds.
        sources: Sources,
    },
    /// Send close orders to held connections.
    Close { pacer: Pacer, how: CloseMode, timeout: Duration, fill: bool, sent: u64 },
    /// Hold or sleep until an instant.
    Wait { until: Instant },
    /// Subscribe or publish on held connections (worker/traffic.rs rings them): done
    /// when each rung connection has reported and `until` has passed.
    Traffic { rung: u64, subscribe: bool, until: Instant, give_up: Instant },
}

impl ActionDriver {
    /// This shard's driver for `action`, starting at `start`. `held` is how many
    /// connections this process holds open now (for close phases); `sources` where the
    /// phase's connections bind.
    pub fn new(action: &Action, start: Instant, held: u64, sources: Sources, shard: Shard) -> ActionDriver {
        match action {
            Action::Connect(c) => ActionDriver::Connect {
                pacer: Pacer::new(start, c.rate, shard.share(c.count), shard),
                timeout: c.timeout,
                permits: Arc::new(Semaphore::new(c.max_inflight)),
                wait: c.wait,
                then_close: None,
                sources,
            },
            Action::Churn(c) => ActionDriver::Connect {
                pacer: Pacer::new(start, c.rate, shard.share(c.count), shard),
                timeout: c.timeout,
                // One cycle holds its slot from connect to close: bound them like handshakes.
                permits: Arc::new(Semaphore::new(DEFAULT_MAX_INFLIGHT as usize)),
                wait: true,
                then_close: Some(CloseCommand {
                    how: c.how,
                    scheduled: start,
                    timeout: CHURN_CLOSE_TIMEOUT,
                    fill: false,
                }),
                sources,
            },
            Action::Close(c) => ActionDriver::Close {
                // A count is split like connects; a fraction applies to what each holds.
                pacer: Pacer::new(start, c.rate, close_share(c.amount, held, shard), shard),
                how: c.how,
                timeout: c.timeout,
                fill: c.fill,
                sent: 0,
            },
            Action::Hold(d) | Action::Sleep(d) => ActionDriver::Wait { until: start + *d },
            Action::Subscribe(s) => {
                ActionDriver::Traffic { rung: 0, subscribe: true, until: start, give_up: start + s.timeout + GRACE }
            }
            Action::Publish(p) => {
                let last = start + Duration::from_secs_f64(p.count as f64 / p.rate);
                let give_up = last + p.timeout + p.drain + GRACE;
                ActionDriver::Traffic { rung: 0, subscribe: false, until: last + p.drain, give_up }
            }
        }
    }

    /// True when the phase's work is done.
    pub fn finished(&self, collected: &Collector) -> bool {
        match self {
            ActionDriver::Connect { pacer, wait: false, .. } => pacer.finished(),
            ActionDriver::Connect { pacer, then_close, .. } => {
                pacer.finished()
                    && collected.connect_outcomes() >= pacer.total()
                    && (then_close.is_none() || collected.close_outcomes() >= collected.connected)
            }
            ActionDriver::Close { pacer, sent, .. } => pacer.finished() && collected.close_outcomes() >= *sent,
            ActionDriver::Wait { until } => Instant::now() >= *until,
            ActionDriver::Traffic { rung, until, .. } => self.outcomes(collected) >= *rung && Instant::now() >= *until,
        }
    }

    /// When the next operation is due.
    pub fn next_due(&self) -> Option<Instant> {
        match self {
            ActionDriver::Connect { pacer, .. } | ActionDriver::Close { pacer, .. } => pacer.next_due(),
            ActionDriver::Wait { until } => Some(*until),
            ActionDriver::Traffic { until, .. } => (Instant::now() < *until).then_some(*until),
        }
    }

    /// When the phase stops waiting for outcomes that never came.
    pub fn give_up_at(&self) -> Option<Instant> {
        match self {
            ActionDriver::Connect { pacer, timeout, then_close, .. } => {
                let close = then_close.map_or(Duration::ZERO, |c| c.timeout);
                Some(pacer.scheduled(pacer.total()) + *timeout + close + GRACE)
            }
            ActionDriver::Close { pacer, timeout, .. } => Some(pacer.scheduled(pacer.total()) + *timeout + GRACE),
            ActionDriver::Wait { .. } => None,
            ActionDriver::Traffic { give_up, .. } => Some(*give_up),
        }
    }

    /// Operations the phase planned.
    pub fn planned(&self) -> u64 {
        match self {
            ActionDriver::Connect { pacer, .. } | ActionDriver::Close { pacer, .. } => pacer.total(),
            ActionDriver::Wait { .. } => 0,
            ActionDriver::Traffic { rung, .. } => *rung,
        }
    }

    /// Operations started so far.
    pub fn attempted(&self) -> u64 {
        match self {
            ActionDriver::Connect { pacer, .. } => pacer.issued(),
            ActionDriver::Close { sent, .. } => *sent,
            ActionDriver::Wait { .. } => 0,
            ActionDriver::Traffic { rung, .. } => *rung,
        }
    }

    /// Operations that succeeded: connections for a connect phase, closes (or complete
    /// churn cycles) otherwise.
    pub fn succeeded(&self, collected: &Collector) -> u64 {
        match self {
            ActionDriver::Connect { then_close: None, .. } => collected.connected,
            ActionDriver::Connect { .. } | ActionDriver::Close { .. } => collected.closed,
            ActionDriver::Wait { .. } => 0,
            ActionDriver::Traffic { subscribe: true, .. } => collected.messages.subscribed(),
            ActionDriver::Traffic { subscribe: false, .. } => collected.messages.publishers_done,
        }
    }

    /// Operations whose outcome is in (for the give-up note).
    pub fn outcomes(&self, collected: &Collector) -> u64 {
        match self {
            ActionDriver::Connect { .. } => collected.connect_outcomes(),
            ActionDriver::Close { .. } => collected.close_outcomes(),
            ActionDriver::Wait { .. } => 0,
            ActionDriver::Traffic { subscribe: true, .. } => collected.messages.subscribes_done,
            ActionDriver::Traffic { subscribe: false, .. } => collected.messages.publishers_done,
        }
    }

    /// The one source address this phase connects from, if it has exactly one.
    pub fn single_source(&self) -> Option<IpAddr> {
        match self {
            ActionDriver::Connect { sources, .. } if sources.addrs.len() == 1 => Some(sources.addrs[0]),
            _ => None,
        }
    }
}

/// The closes of a phase that fall to a shard holding `held` connections.
fn close_share(amount: CloseAmount, held: u64, shard: Shard) -> u64 {
    match amount {
        CloseAmount::Count(n) => shard.share(n).min(held),
        CloseAmount::All | CloseAmount::Fraction(_) => amount.of(held),
    }
}
