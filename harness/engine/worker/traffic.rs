//! A subscribe or publish phase's start in a worker: its [`TrafficOrder`] put where the
//! worker's connections find it, and the bells of the held connections it names rung.

use std::sync::Arc;

use tokio::time::Instant;

use super::Worker;
use crate::engine::connection::{Traffic, TrafficOrder};
use crate::plan::traffic::Fanout;
use crate::plan::Action;

impl Worker<'_> {
    /// Order phase `index`'s traffic to the held connections it names; returns how many
    /// were rung (each reports back once).
    pub(super) fn order_traffic(&self, index: usize, action: &Action, start: Instant) -> u64 {
        let opened = self.plan.connections_before(index);
        let (what, clients) = match action {
            Action::Subscribe(s) => (Traffic::Subscribe(s.clone()), s.clients),
            Action::Publish(p) => {
                let subscribes = self.plan.phases[..index].iter().filter_map(|phase| match &phase.action {
                    Action::Subscribe(s) => Some(s),
                    _ => None,
                });
                let fanout = Arc::new(Fanout::of(subscribes, opened));
                let publishers = p.clients.to.min(opened).saturating_sub(p.clients.from);
                (Traffic::Publish { plan: p.clone(), publishers, fanout }, p.clients)
            }
            _ => return 0,
        };
        let order = Arc::new(TrafficOrder { phase: index, start, what });
        *self.spec.traffic.lock().unwrap_or_else(|p| p.into_inner()) = Some(order);
        self.connections.ring_traffic(clients)
    }
}
