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
//! the connection task keeps no tie to the phase's slots once connected (one would cost a
//! field in every held connection's bell, for a rare event). The backoff and its jitter
//! are what spread a storm; each attempt has the policy's `timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::links::{micros_since, Attempt, Event, Links};
use super::open::open_within_deadline;
use crate::plan::ReconnectPolicy;
use crate::transport::Stream;

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
            Ok(opened) => {
                links.send(Event::Reconnected { recovery_us: micros_since(lost_at) });
                return Some(opened.stream);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::connection::ConnSpec;
    use crate::engine::worker::held::Bell;
    use crate::failure::ErrorKind;
    use crate::plan::Jitter;
    use crate::protocol::Protocol;

    /// A raw TCP connection toward `target` under `policy`, and where its events go.
    fn tcp_links(target: SocketAddr, policy: ReconnectPolicy) -> (Links, mpsc::UnboundedReceiver<Event>) {
        let mut spec = ConnSpec::mqtt_for_tests(target, Duration::ZERO);
        let spec_mut = Arc::get_mut(&mut spec).expect("a fresh spec");
        (spec_mut.protocol, spec_mut.reconnect) = (Protocol::Tcp, Some(policy));
        let (events, received) = mpsc::unbounded_channel();
        (Links { spec, events, bell: Arc::new(Bell::new()), stop: CancellationToken::new() }, received)
    }

    fn policy(max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy {
            floor: Duration::from_millis(20),
            ceiling: Duration::from_millis(80),
            jitter: Jitter::None,
            max_attempts,
            timeout: Duration::from_secs(2),
        }
    }

    /// Nothing listens while the target is down: each attempt is refused (a refusal,
    /// not an error), then the listener is back on the same port and the connection
    /// with it; its recovery time covers the time down.
    #[tokio::test]
    async fn a_tcp_connection_comes_back_when_its_target_does() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        drop(listener);
        let (links, mut events) = tcp_links(target, policy(None));
        let down = Duration::from_millis(300);
        let back = std::thread::spawn(move || {
            std::thread::sleep(down);
            let listener = std::net::TcpListener::bind(target).unwrap();
            listener.accept().map(|(peer, _)| peer)
        });
        let again = tokio::time::timeout(Duration::from_secs(5), reconnect(&links, policy(None), 7, None)).await;
        assert!(again.is_ok_and(|s| s.is_some()), "back within 5 s");
        let _peer = back.join().unwrap().unwrap();
        drop(links);
        let mut seen = Vec::new();
        while let Some(event) = events.recv().await {
            seen.push(event);
        }
        let refused = seen.iter().filter(|e| matches!(e, Event::ReconnectFailed { kind: ErrorKind::Refused, .. }));
        let attempts = seen.iter().filter(|e| matches!(e, Event::ReconnectAttempt)).count();
        assert!(refused.count() >= 2 && attempts >= 3, "{seen:?}");
        let Some(Event::Reconnected { recovery_us }) = seen.last() else { panic!("ends back: {seen:?}") };
        assert!(*recovery_us >= down.as_micros() as u64, "{recovery_us} µs covers the {down:?} down");
    }

    /// Its attempts run out: given up, and told so (an error, `reconnect_gave_up`).
    #[tokio::test]
    async fn a_connection_is_given_up_after_its_attempts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        drop(listener);
        let (links, mut events) = tcp_links(target, policy(Some(2)));
        let again = tokio::time::timeout(Duration::from_secs(5), reconnect(&links, policy(Some(2)), 7, None)).await;
        assert!(again.is_ok_and(|s| s.is_none()), "given up within 5 s");
        drop(links);
        let mut seen = Vec::new();
        while let Some(event) = events.recv().await {
            seen.push(format!("{event:?}"));
        }
        let failed = "ReconnectFailed { kind: Refused, errno: None }";
        assert_eq!(seen, ["ReconnectAttempt", failed, "ReconnectAttempt", failed, "GaveUp"]);
    }
}
