//! One worker's message figures for a phase, folded from its connections'
//! [`TrafficEvent`]s: counters, histograms, timelines, and per (subscriber, publisher)
//! the sequence numbers seen, which tell duplicates and messages out of order. This
//! state is the worker's, not the connections': an idle held connection carries none.

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use crate::engine::connection::TrafficEvent;
use crate::latency::Latency;
use crate::protocol::mqtt::reason_name;
use crate::report::messages::{MessageLatencies, Messages};

/// Gaps remembered per (subscriber, publisher): a message filling one is out of order,
/// one seen before is a duplicate. Past this many, older gaps are forgotten.
const MAX_GAPS: usize = 4096;

/// The width of a timeline bucket (as the collector's).
const TIMELINE_STEP: std::time::Duration = std::time::Duration::from_millis(100);

/// What one subscriber has seen of one publisher.
#[derive(Debug, Default)]
struct Seen {
    /// The highest sequence number received.
    highest: Option<u64>,
    /// Sequence numbers below `highest` not received yet.
    gaps: HashSet<u64>,
}

impl Seen {
    /// `None`: new and in order; `Some(true)`: a duplicate; `Some(false)`: out of order.
    fn take(&mut self, seq: u64) -> Option<bool> {
        match self.highest {
            Some(h) if seq <= h => Some(!self.gaps.remove(&seq)),
            h => {
                let from = h.map_or(0, |h| h + 1);
                for missing in from..seq {
                    if self.gaps.len() >= MAX_GAPS {
                        break;
                    }
                    self.gaps.insert(missing);
                }
                self.highest = Some(seq);
                None
            }
        }
    }
}

/// A phase's message figures in one worker.
#[derive(Debug)]
pub struct Tally {
    figures: Messages,
    suback: Latency,
    puback: Latency,
    pubcomp: Latency,
    delivery: Latency,
    seen: HashMap<(u64, u64), Seen>,
    /// Publishers that finished their share of the phase.
    pub publishers_done: u64,
    /// SUBSCRIBEs answered or timed out.
    pub subscribes_done: u64,
    any: bool,
    start: Instant,
}

impl Tally {
    pub fn new(start: Instant) -> Tally {
        Tally {
            figures: Messages::default(),
            suback: Latency::new(),
            puback: Latency::new(),
            pubcomp: Latency::new(),
            delivery: Latency::new(),
            seen: HashMap::new(),
            publishers_done: 0,
            subscribes_done: 0,
            any: false,
            start,
        }
    }

    fn bump(line: &mut Vec<u32>, start: Instant) {
        let at = (Instant::now().saturating_duration_since(start).as_millis() / TIMELINE_STEP.as_millis()) as usize;
        if line.len() <= at {
            line.resize(at + 1, 0);
        }
        line[at] = line[at].saturating_add(1);
    }

    pub fn record(&mut self, event: TrafficEvent) {
        self.any = true;
        let f = &mut self.figures;
        match event {
            TrafficEvent::Subscribed { us } => {
                f.subscribed += 1;
                self.subscribes_done += 1;
                self.suback.record_us(us);
            }
            TrafficEvent::SubscribeRefused { code } => {
                *f.subscribe_refused.entry(reason_name(code).into_owned()).or_default() += 1;
                self.subscribes_done += 1;
            }
            TrafficEvent::SubscribeTimedOut => {
                f.subscribe_timed_out += 1;
                self.subscribes_done += 1;
            }
            TrafficEvent::Published { expected } => {
                f.published += 1;
                f.expected += expected;
                Tally::bump(&mut f.published_100ms, self.start);
            }
            TrafficEvent::Acknowledged { us, qos } => {
                f.acknowledged += 1;
                if qos == 2 { &mut self.pubcomp } else { &mut self.puback }.record_us(us);
            }
            TrafficEvent::PublishRefused { code } => {
                *f.publish_refused.entry(reason_name(code).into_owned()).or_default() += 1;
            }
            TrafficEvent::AckTimedOut => f.ack_timed_out += 1,
            TrafficEvent::Delivered { subscriber, publisher, seq, latency_us } => {
                match self.seen.entry((subscriber, publisher)).or_default().take(seq) {
                    Some(true) => f.duplicated += 1,
                    Some(false) => {
                        f.out_of_order += 1;
                        f.delivered += 1;
                    }
                    None => f.delivered += 1,
                }
                self.delivery.record_us(latency_us);
                Tally::bump(&mut f.delivered_100ms, self.start);
            }
            TrafficEvent::Foreign => f.foreign += 1,
            TrafficEvent::Unsent { count } => f.unsent += count,
            TrafficEvent::PublisherDone => self.publishers_done += 1,
        }
    }

    /// SUBSCRIBEs granted so far.
    pub fn subscribed(&self) -> u64 {
        self.figures.subscribed
    }

    /// The phase's figures; `None` when it saw no traffic.
    pub fn report(&mut self) -> Option<Messages> {
        if !self.any {
            return None;
        }
        let mut figures = std::mem::take(&mut self.figures);
        figures.latency_us = MessageLatencies {
            suback: self.suback.summary(),
            puback: self.puback.summary(),
            pubcomp: self.pubcomp.summary(),
            delivery: self.delivery.summary(),
        };
        figures.settle();
        Some(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_late_messages_are_told_apart() {
        let mut tally = Tally::new(Instant::now());
        let deliver = |seq| TrafficEvent::Delivered { subscriber: 1, publisher: 9, seq, latency_us: 10 };
        for seq in [0, 1, 3, 2, 3, 0] {
            tally.record(deliver(seq));
        }
        tally.record(TrafficEvent::Published { expected: 5 });
        let m = tally.report().unwrap();
        assert_eq!((m.delivered, m.duplicated, m.out_of_order), (4, 2, 1));
        assert_eq!((m.expected, m.lost), (5, 1));
        assert_eq!(m.latency_us.delivery.count, 6);
    }

    #[test]
    fn no_traffic_no_figures() {
        assert_eq!(Tally::new(Instant::now()).report(), None);
    }
}
