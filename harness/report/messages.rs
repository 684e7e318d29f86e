//! [`Messages`]: what a phase's traffic over held MQTT connections measured
//! (subscriptions, messages published, acknowledged, delivered, lost), and its exact
//! merge across workers and shards: counters added, histograms merged, `lost` computed
//! again from the merged `expected` and `delivered`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::{Latency, LatencySummary};

/// A phase's message figures; absent from a phase without subscribe, publish or deliveries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    /// SUBSCRIBEs granted (SUBACK code 0, 1 or 2).
    pub subscribed: u64,
    /// SUBSCRIBEs refused, by reason (SUBACK code 0x80 and up).
    pub subscribe_refused: BTreeMap<String, u64>,
    /// SUBSCRIBEs with no SUBACK within the timeout.
    pub subscribe_timed_out: u64,
    /// PUBLISHes written to the broker.
    pub published: u64,
    /// Messages scheduled but never written: their publisher's connection ended first.
    #[serde(default)]
    pub unsent: u64,
    /// PUBLISHes acknowledged (PUBACK at QoS 1, PUBCOMP at QoS 2).
    pub acknowledged: u64,
    /// PUBLISHes refused (MQTT 5 PUBACK / PUBREC reason 0x80 and up), by reason.
    pub publish_refused: BTreeMap<String, u64>,
    /// PUBLISHes (QoS 1 and 2) not acknowledged within the timeout.
    pub ack_timed_out: u64,
    /// Deliveries the subscriptions call for: each message published times the
    /// subscriptions (of the subscribe phases' templates) its topic matches.
    pub expected: u64,
    /// Messages received by subscribers, each (subscriber, publisher, sequence) once.
    pub delivered: u64,
    /// Messages received again by the same subscriber.
    pub duplicated: u64,
    /// Messages received after a later one of the same publisher, by the same subscriber.
    pub out_of_order: u64,
    /// `expected - delivered`, when positive.
    pub lost: u64,
    /// Messages received without sockcap's header (someone else's).
    pub foreign: u64,
    /// Latencies: SUBACK from the SUBSCRIBE, PUBACK and PUBCOMP from the message's
    /// scheduled instant, delivery from that instant to the subscriber's receipt.
    pub latency_us: MessageLatencies,
    /// Messages published in each 100 ms of the phase.
    #[serde(default)]
    pub published_100ms: Vec<u32>,
    /// Messages delivered in each 100 ms of the phase.
    #[serde(default)]
    pub delivered_100ms: Vec<u32>,
}

/// The message latencies (µs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageLatencies {
    pub suback: LatencySummary,
    pub puback: LatencySummary,
    pub pubcomp: LatencySummary,
    pub delivery: LatencySummary,
}

impl Messages {
    /// `lost` from `expected` and `delivered`.
    pub fn settle(&mut self) {
        self.lost = self.expected.saturating_sub(self.delivered);
    }

    /// The parts' figures as one; `Err` names a histogram that cannot be decoded.
    pub fn merge(parts: &[&Messages]) -> Result<Messages, String> {
        let sum = |f: fn(&Messages) -> u64| parts.iter().map(|m| f(m)).fold(0, u64::saturating_add);
        let maps = |f: fn(&Messages) -> &BTreeMap<String, u64>| {
            let mut all = BTreeMap::new();
            for m in parts {
                for (k, v) in f(m) {
                    *all.entry(k.clone()).or_insert(0u64) += v;
                }
            }
            all
        };
        let hist = |name: &str, f: fn(&Messages) -> &LatencySummary| {
            let mut merged = Latency::new();
            for part in parts.iter().map(|m| f(m)).filter(|s| s.count > 0) {
                let l = Latency::from_hdr(&part.hdr).map_err(|e| format!("the {name} histogram: {e}"))?;
                merged.merge(&l);
            }
            Ok::<_, String>(merged.summary())
        };
        let lines = |f: fn(&Messages) -> &Vec<u32>| {
            let mut all: Vec<u32> = Vec::new();
            for m in parts {
                let line = f(m);
                if all.len() < line.len() {
                    all.resize(line.len(), 0);
                }
                all.iter_mut().zip(line).for_each(|(a, b)| *a = a.saturating_add(*b));
            }
            all
        };
        let mut merged = Messages {
            subscribed: sum(|m| m.subscribed),
            subscribe_refused: maps(|m| &m.subscribe_refused),
            subscribe_timed_out: sum(|m| m.subscribe_timed_out),
            published: sum(|m| m.published),
            unsent: sum(|m| m.unsent),
            acknowledged: sum(|m| m.acknowledged),
            publish_refused: maps(|m| &m.publish_refused),
            ack_timed_out: sum(|m| m.ack_timed_out),
            expected: sum(|m| m.expected),
            delivered: sum(|m| m.delivered),
            duplicated: sum(|m| m.duplicated),
            out_of_order: sum(|m| m.out_of_order),
            lost: 0,
            foreign: sum(|m| m.foreign),
            latency_us: MessageLatencies {
                suback: hist("suback", |m| &m.latency_us.suback)?,
                puback: hist("puback", |m| &m.latency_us.puback)?,
                pubcomp: hist("pubcomp", |m| &m.latency_us.pubcomp)?,
                delivery: hist("delivery", |m| &m.latency_us.delivery)?,
            },
            published_100ms: lines(|m| &m.published_100ms),
            delivered_100ms: lines(|m| &m.delivered_100ms),
        };
        merged.settle();
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher's worker expects what a subscriber's worker delivers: lost comes
    /// from the sums, never from one part's.
    #[test]
    fn merging_adds_counts_and_histograms_and_settles_lost_on_the_sums() {
        let mut delivery = Latency::new();
        delivery.record_us(900);
        let publisher = Messages { published: 10, expected: 10, lost: 10, ..Messages::default() };
        let subscriber = Messages {
            delivered: 9,
            duplicated: 1,
            latency_us: MessageLatencies { delivery: delivery.summary(), ..Default::default() },
            delivered_100ms: vec![4, 5],
            ..Messages::default()
        };
        let merged = Messages::merge(&[&publisher, &subscriber]).unwrap();
        assert_eq!((merged.published, merged.delivered, merged.lost, merged.duplicated), (10, 9, 1, 1));
        assert_eq!(merged.latency_us.delivery.count, 1);
        assert_eq!(merged.delivered_100ms, [4, 5]);
        let broken = Messages {
            latency_us: MessageLatencies {
                puback: LatencySummary { count: 1, hdr: "!".into(), ..Default::default() },
                ..Default::default()
            },
            ..Messages::default()
        };
        assert!(Messages::merge(&[&broken]).unwrap_err().contains("puback"));
    }
}
