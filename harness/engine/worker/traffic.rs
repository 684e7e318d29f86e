//! A subscribe or publish phase's start in a worker: its [`TrafficOrder`] put where the
//! worker's connections find it, and the bells of the held connections it names rung.

use std::sync::Arc;

use tokio::time::Instant;

use super::Worker;
use crate::engine::connection::{Traffic, TrafficOrder};
use crate::plan::traffic::{Fanout, PublishPlan, SubscribePlan};
use crate::plan::Action;

impl Worker<'_> {
    /// Order phase `index`'s traffic to the held connections it names; returns how many
    /// were rung (each reports back once).
    pub(super) fn order_traffic(&self, index: usize, action: &Action, start: Instant) -> u64 {
        let opened = self.plan.connections_before(index);
        let (what, clients) = match action {
            Action::Subscribe(s) => {
                let s = SubscribePlan { clients: s.clients.resolve(opened), ..s.clone() };
                let clients = s.clients;
                (Traffic::Subscribe(s), clients)
            }
            Action::Publish(p) => {
                // Each subscribe phase's share of what was open when it ran.
                let subscribes: Vec<SubscribePlan> = (0..index)
                    .filter_map(|i| match &self.plan.phases[i].action {
                        Action::Subscribe(s) => Some(SubscribePlan {
                            clients: s.clients.resolve(self.plan.connections_before(i)),
                            ..s.clone()
                        }),
                        _ => None,
                    })
                    .collect();
                let fanout = Arc::new(Fanout::of(&subscribes, opened));
                let p = PublishPlan { clients: p.clients.resolve(opened), ..p.clone() };
                let publishers = p.clients.to.min(opened).saturating_sub(p.clients.from);
                let clients = p.clients;
                (Traffic::Publish { plan: p, publishers, fanout }, clients)
            }
            _ => return 0,
        };
        let order = Arc::new(TrafficOrder { phase: index, start, what });
        *self.spec.traffic.lock().unwrap_or_else(|p| p.into_inner()) = Some(order);
        self.connections.ring_traffic(clients)
    }
}
