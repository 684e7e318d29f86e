//! Bringing a lost connection back under the scenario's [`ReconnectPolicy`]: wait the
//! backoff (jittered), dial and handshake again with the same connection number (so the
//! same client id) from the same source address (a new port), and again on a refusal
//! (connect refused, CONNACK refused, timeout, reset), until it is back or the policy's
//! attempts run out. The worker's stop or close order during a backoff ends it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::links::{Attempt, Event, Links};
use super::open::open_within_deadline;
use crate::plan::{draw, ReconnectPolicy};
use crate::transport::Stream;

/// Time allowed to one reconnect attempt, from its dial to its CONNACK (as a connect
/// phase's default timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconnect connection `n`; `None` when the attempts ran out or the run or a close
/// order ended it.
pub(super) async fn reconnect(
    links: &Links,
    policy: ReconnectPolicy,
    n: u64,
    source: Option<SocketAddr>,
) -> Option<Stream> {
    // No pings while the connection is down.
    links.bell.ping_at(None);
    for attempt in 1u32.. {
        let seed = n ^ (u64::from(links.spec.worker) << 48) ^ (u64::from(attempt) << 32).rotate_left(7);
        let wait = policy.delay(attempt, draw(seed))?;
        match back_off(links, Instant::now() + wait).await {
            Backoff::Over => {}
            Backoff::Stop => return None,
            Backoff::Close => {
                links.send(Event::ClosedWhileDown);
                return None;
            }
        }
        links.send(Event::ReconnectAttempt);
        let now = Instant::now();
        // A slot of its own: a reconnect is not one of a connect phase's handshakes.
        let permits = Arc::new(Semaphore::new(1));
        let again = Attempt { n, scheduled: now, deadline: now + ATTEMPT_TIMEOUT, source, then_close: None, permits };
        let opened = tokio::select! {
            biased;
            _ = links.stop.cancelled() => return None,
            opened = open_within_deadline(&links.spec, &again, &links.events) => opened,
        };
        if let Ok(opened) = opened {
            links.send(Event::Reconnected);
            return Some(opened.stream);
        }
    }
    None
}

/// How a backoff ended.
enum Backoff {
    Over,
    /// The run ends.
    Stop,
    /// The worker ordered this connection closed.
    Close,
}

/// Wait until `until`, or the run's end or the worker's close order.
async fn back_off(links: &Links, until: Instant) -> Backoff {
    let sleep = tokio::time::sleep_until(until);
    tokio::pin!(sleep);
    std::future::poll_fn(|cx| {
        let rings = links.bell.poll(cx);
        if rings.stop || links.stop.is_cancelled() {
            return Poll::Ready(Backoff::Stop);
        }
        if rings.close.is_some() {
            return Poll::Ready(Backoff::Close);
        }
        sleep.as_mut().poll(cx).map(|()| Backoff::Over)
    })
    .await
}
