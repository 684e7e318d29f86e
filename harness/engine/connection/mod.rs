//! One client connection as a task, built as a stack:
//! - transport: the dial ([`crate::transport`]: TCP today, its source-port rules);
//! - protocol: the hello and its answer, the keep-alive ping, what a held connection
//!   reads, the goodbye ([`crate::protocol::client`]: raw TCP, MQTT 3.1.1);
//! - session behaviour, one file per stage of the task's life: `open.rs` (connect,
//!   handshake, a churn cycle's close), `hold.rs` (keep-alive, drop detection),
//!   `reconnect.rs` (a lost connection's backoff and attempts under the policy),
//!   `close.rs` (the close modes).
//!
//! Everything it measures goes to the engine as an [`Event`]; it never holds a buffer
//! across an idle await (it waits for read readiness and reads into a small stack
//! array). While held, it hears from the worker through its
//! [`Bell`](crate::engine::worker::held::Bell). The types it shares with the worker are
//! in `links.rs` and `command.rs`, re-exported here.

mod active;
mod close;
mod command;
mod hold;
mod links;
mod open;
mod order;
mod reconnect;

use std::future::Future;
use std::net::SocketAddr;

pub use command::CloseCommand;
pub use links::{Attempt, ConnSpec, Event, Links, NO_SERVER_KEEP_ALIVE};
pub use order::{Traffic, TrafficEvent, TrafficOrder};

/// Run one connection from its scheduled connect to its end.
///
/// The attempt (with its handshake slots) comes boxed and goes once connected, and the
/// connecting and closing futures are boxed: a held connection's task carries only what
/// holding needs (see the size test below). `run` and `hold` return `async move` blocks
/// rather than being `async fn`s, whose arguments would take their space twice.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run(links: Links, attempt: Box<Attempt>) -> impl Future<Output = ()> {
    async move {
        // A reconnect keeps the connection number (kept in the bell, see there) and the
        // source address (a new port: hold gives back the lost socket's address).
        links.bell.set_number(attempt.n);
        // The attempt moves into the connecting future and goes with it: `*attempt` here
        // would keep the box's allocation until the task ends.
        let opening = open::open_or_churn(&links.spec, attempt, &links.events, &links.stop);
        let Some(mut stream) = Box::pin(opening).await else { return };
        while let Some(source) = hold::hold(stream, &links).await {
            let Some(policy) = links.spec.reconnect else { return };
            let n = links.bell.number();
            let source = source.map(|s| SocketAddr::new(s.ip(), 0));
            let Some(again) = Box::pin(reconnect::reconnect(&links, policy, n, source)).await else { return };
            stream = again;
        }
    }
}

#[cfg(test)]
mod size_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{mpsc, Semaphore};
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::worker::held::Bell;

    /// A held connection's whole task state is this future, inside tokio's task cell: a
    /// 32-byte header, scheduler and task id (16), the future with TaskTracker's token (8)
    /// and the stage's tag (8), a 48-byte trailer, aligned to 128 bytes. That is 256 bytes
    /// while the future is at most 144 bytes, 384 past it. Besides the cell, a held
    /// connection costs the socket's registration (256 bytes) and its bell (see worker/held.rs).
    #[test]
    fn connection_future_stays_under_budget() {
        let spec = ConnSpec::mqtt_for_tests("127.0.0.1:9".parse().unwrap(), Duration::from_secs(30));
        let now = Instant::now();
        let permits = Arc::new(Semaphore::new(1));
        let attempt =
            Box::new(Attempt { n: 0, scheduled: now, deadline: now, source: None, then_close: None, permits });
        let (tx, _rx) = mpsc::unbounded_channel();
        let links = Links { spec, events: tx, bell: Arc::new(Bell::new()), stop: CancellationToken::new() };
        let fut = run(links, attempt);
        let size = std::mem::size_of_val(&fut);
        // 144 bytes with tokio 1.54: connecting and closing are boxed, so this is the hold
        // loop (links, socket, two flags, the poll_fn's references).
        assert!(size <= 144, "connection future is {size} bytes: the task cell grows from 256 to 384 bytes");
    }
}
