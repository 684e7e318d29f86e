//! Traffic over held MQTT connections, between the worker and a connection: the
//! [`TrafficOrder`] a phase gives the connections it rings (subscribe, or publish on a
//! schedule), and the [`TrafficEvent`]s they report back.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::traffic::{Fanout, PublishPlan, SubscribePlan};

/// One phase's order to the connections it rings. One value for the worker (in
/// [`ConnSpec::traffic`](super::ConnSpec)): a connection holds none until rung.
#[derive(Debug)]
pub struct TrafficOrder {
    /// The phase's index: a connection carries out each order once.
    pub phase: usize,
    /// The phase's start: the schedule's origin.
    pub start: Instant,
    pub what: Traffic,
}

#[derive(Debug)]
pub enum Traffic {
    Subscribe(SubscribePlan),
    /// Publish: `publishers` connections (`clients.from ..`) share the plan's messages;
    /// `fanout` tells each message's expected deliveries.
    Publish {
        plan: PublishPlan,
        publishers: u64,
        fanout: Arc<Fanout>,
    },
}

impl TrafficOrder {
    /// Publisher `j`'s message `k` is the phase's message `k × P + j`: when it is due.
    pub fn scheduled(&self, plan: &PublishPlan, publishers: u64, j: u64, k: u64) -> Instant {
        self.start + Duration::from_secs_f64((k * publishers + j) as f64 / plan.rate)
    }
}

/// How many of `count` messages publisher `j` of `publishers` sends.
pub fn messages_of(count: u64, publishers: u64, j: u64) -> u64 {
    if j >= count || publishers == 0 {
        0
    } else {
        (count - j - 1) / publishers + 1
    }
}

/// What a connection's traffic reports (folded by the worker's tally).
#[derive(Debug, Clone, Copy)]
pub enum TrafficEvent {
    /// SUBACK granted, µs after the SUBSCRIBE.
    Subscribed {
        us: u64,
    },
    SubscribeRefused {
        code: u8,
    },
    SubscribeTimedOut,
    /// A PUBLISH written; `expected`: deliveries its topic calls for.
    Published {
        expected: u64,
    },
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2), µs after the message's scheduled instant.
    Acknowledged {
        us: u64,
        qos: u8,
    },
    PublishRefused {
        code: u8,
    },
    AckTimedOut,
    /// A message reached subscriber `subscriber`.
    Delivered {
        subscriber: u64,
        publisher: u64,
        seq: u64,
        latency_us: u64,
    },
    /// A message without sockcap's stamp.
    Foreign,
    /// Messages a publisher had scheduled and could not send: its connection ended.
    Unsent {
        count: u64,
    },
    /// A publisher has sent all its messages and has their acknowledgements (or gave up).
    PublisherDone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_share_the_messages_round_robin() {
        assert_eq!((0..3).map(|j| messages_of(10, 3, j)).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!((0..5).map(|j| messages_of(2, 5, j)).sum::<u64>(), 2);
    }
}
