//! Bringing a lost connection back under the scenario's [`ReconnectPolicy`]: wait the
//! backoff (jittered), dial and handshake again with the same connection number (so the
//! same client id) from the same source address (a new port), and again on a refusal
//! (connect refused, CONNACK refused, timeout, reset), until it is back or the policy's
//! attempts run out. The worker's stop or close order during a backoff ends it.
//!
//! Each failed attempt is an [`Event::ReconnectFailed`] (the phase's `recovery.refusals`,
//! not its errors), the attempts running out an [`Event::GaveUp`] (an error,
//! `reconnect_gave_up`), and the return an [`Event::Reconnected`] with the recovery time:
//! from the loss (the moment the hold saw it) to the CONNACK again (TCP: to the connect).
//!
//! An attempt waits for no handshake slot (`max_inflight`): slots are a connect phase's,
//! and a reconnect happens in whatever phase the loss came, mostly a hold, which has none;
//! the connection task keeps no tie to the phase's slots once connected (a field in every
//! held connection's bell for a rare event). The backoff and its jitter are what spread a
//! storm; each attempt has the policy's `timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::links::micros_since;
use super::links::{Attempt, Event, Links};
use super::open::open_within_deadline;
use crate::plan::ReconnectPolicy;

/// Reconnect connection `n`; `None` when the attempts ran out or the run or a close
/// order ended it.
pub(super) async fn reconnect(
    links: &Links,
    policy: ReconnectPolicy,
    n: u64,
    source: Option<SocketAddr>,
) -> Option<TcpStream> {
    // No pings while the connection is down.
    links.bell.ping_at(None);
    let lost_at = Instant::now();
    for attempt in 1u32.. {
        let Some(wait) = policy.wait(n, attempt) else {
            links.send(Event::GaveUp);
            return None;
        };
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
        let again = Attempt { n, scheduled: now, deadline: now + policy.timeout, source, then_close: None, permits };
        let opened = tokio::select! {
            biased;
            _ = links.stop.cancelled() => return None,
            opened = open_within_deadline(&links.spec, &again, &links.events) => opened,
        };
        match opened {
            Ok((stream, ..)) => {
                links.send(Event::Reconnected { recovery_us: micros_since(lost_at) });
                return Some(stream);
            }
            Err(failure) => links.send(Event::ReconnectFailed { kind: failure.kind, errno: failure.errno }),
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
