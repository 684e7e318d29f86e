//! The embedded target's message routing, like a small broker: subscriptions by exact
//! topic, by filters with `+` and `#`, and shared (`$share/group/filter`: each message
//! to one member of each group, in turn); QoS 0, 1 and 2 toward subscribers (the lower
//! of the message's and the subscription's). No persistence, no retained messages, no
//! queue for a subscriber that is gone: a message reaches the subscribers connected when
//! it arrives.
//!
//! One routing table per target process ([`ROUTER`]). With `serve --workers N` the
//! kernel spreads connections over N processes (SO_REUSEPORT), and a publisher and a
//! subscriber in different processes do not meet: run traffic against one process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::plan::traffic::matches;

/// A message on its way to subscribers.
#[derive(Debug)]
pub(super) struct Routed {
    pub topic: Box<str>,
    pub payload: Box<[u8]>,
}

/// What a subscriber's inbox receives: the message and the QoS it goes out at.
pub(super) type Delivery = (Arc<Routed>, u8);

/// A subscribed connection's inbox: its messages, and how to encode them.
#[derive(Debug)]
pub(super) struct Inbox {
    pub rx: UnboundedReceiver<Delivery>,
    tx: UnboundedSender<Delivery>,
    pub v5: bool,
    next_id: u16,
}

impl Inbox {
    pub fn new(v5: bool) -> Inbox {
        let (tx, rx) = unbounded_channel();
        Inbox { rx, tx, v5, next_id: 0 }
    }

    /// The packet identifier of its next QoS 1 or 2 message.
    pub fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }
}

#[derive(Debug, Clone)]
struct Sub {
    qos: u8,
    tx: UnboundedSender<Delivery>,
}

#[derive(Debug, Default)]
struct Table {
    exact: HashMap<String, Vec<Sub>>,
    wild: Vec<(String, Sub)>,
    /// (group, filter) → members and whose turn it is.
    shared: HashMap<(String, String), (Vec<Sub>, usize)>,
}

/// The routing table of one target process.
#[derive(Debug, Default)]
pub(super) struct Router {
    table: Mutex<Table>,
}

/// This process's routing table.
pub(super) static ROUTER: LazyLock<Router> = LazyLock::new(Router::default);

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe `inbox` to `filter` at `qos`.
    pub fn subscribe(&self, filter: &str, qos: u8, inbox: &Inbox) {
        let sub = Sub { qos, tx: inbox.tx.clone() };
        let mut table = self.lock();
        if let Some((group, f)) = filter.strip_prefix("$share/").and_then(|r| r.split_once('/')) {
            table.shared.entry((group.to_string(), f.to_string())).or_default().0.push(sub);
        } else if filter.contains(['+', '#']) {
            table.wild.push((filter.to_string(), sub));
        } else {
            table.exact.entry(filter.to_string()).or_default().push(sub);
        }
    }

    /// Route a message to every subscription whose filter matches `topic`, forgetting
    /// subscribers that are gone; returns how many it reached.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> usize {
        let routed = Arc::new(Routed { topic: topic.into(), payload: payload.into() });
        let send = |sub: &Sub| sub.tx.send((routed.clone(), qos.min(sub.qos))).is_ok();
        let mut table = self.lock();
        let mut reached = 0;
        if let Some(subs) = table.exact.get_mut(topic) {
            subs.retain(|s| {
                send(s) && {
                    reached += 1;
                    true
                }
            });
        }
        table.wild.retain(|(f, s)| {
            if !matches(f, topic) {
                return !s.tx.is_closed();
            }
            send(s) && {
                reached += 1;
                true
            }
        });
        for ((_, filter), (members, turn)) in table.shared.iter_mut() {
            if !matches(filter, topic) {
                continue;
            }
            members.retain(|s| !s.tx.is_closed());
            if !members.is_empty() {
                *turn = (*turn + 1) % members.len();
                reached += usize::from(send(&members[*turn]));
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_topic_wildcard_and_share_group() {
        let router = Router::default();
        let (mut a, mut b, mut s1, mut s2) = (Inbox::new(false), Inbox::new(true), Inbox::new(true), Inbox::new(true));
        router.subscribe("t/1", 1, &a);
        router.subscribe("t/+", 0, &b);
        router.subscribe("$share/g/t/#", 2, &s1);
        router.subscribe("$share/g/t/#", 2, &s2);
        assert_eq!(router.publish("t/1", b"x", 1), 3, "exact, wildcard, one of the group");
        assert_eq!(a.rx.try_recv().unwrap().1, 1);
        assert_eq!(b.rx.try_recv().unwrap().1, 0, "the subscription's lower QoS");
        assert_eq!(router.publish("t/2", b"y", 2), 2);
        let shared = [s1.rx.try_recv().is_ok(), s1.rx.try_recv().is_ok(), s2.rx.try_recv().is_ok()];
        assert_eq!(shared.iter().filter(|r| **r).count(), 2, "the group took turns: {shared:?}");
        drop(a);
        assert_eq!(router.publish("t/1", b"z", 0), 2, "a subscriber gone is forgotten");
        assert_eq!(router.publish("other", b"z", 0), 0);
    }
}
