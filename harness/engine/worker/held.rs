//! The worker's held connections and how it reaches each of them: a [`Bell`] per
//! connection, through which the worker tells it to close, to stop, or that its
//! keep-alive ping is due, and the [`HeldConnections`] of bells, oldest first, with the one
//! keep-alive tick per worker that rings the bells whose ping is due.
//!
//! A bell replaces what each held connection used to carry across its idle await: a
//! oneshot receiver for the close order (and the channel's allocation), a cancellation
//! future (72 bytes) and a keep-alive `Sleep` (112 bytes, and a timer wheel entry). One
//! small allocation and one waker do all three. A ping goes out at most one tick late
//! (see [`tick_period`]); the next is due one keep-alive interval after the last was due.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::engine::connection::CloseCommand;
use crate::plan::traffic::Clients;

/// One connection's doorbell, shared by the connection task and the worker.
#[derive(Debug, Default)]
pub struct Bell {
    state: Mutex<Rung>,
    /// The connection's number, kept for a reconnect (its client id) by the task itself:
    /// here it costs the bell 8 bytes, in the task's future it would cost its cell 128.
    number: AtomicU64,
}

/// What has been rung on a bell and not yet taken, and who to wake.
#[derive(Debug, Default)]
struct Rung {
    /// The run is ending: stop without closing.
    stop: bool,
    /// The worker's close order.
    close: Option<CloseCommand>,
    /// The keep-alive ping is due.
    ping: bool,
    /// The worker's traffic order (in the worker's `ConnSpec::traffic`) is for it.
    traffic: bool,
    /// When the next ping is due (`None`: no pings), moved on by [`Bell::pinged`].
    ping_due: Option<Instant>,
    /// The connection task, registered by its last poll.
    waker: Option<Waker>,
}

/// What a bell tells its connection, in the order the connection handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rings {
    /// Stop without closing: the run is ending.
    pub stop: bool,
    /// The worker's close order.
    pub close: Option<CloseCommand>,
    /// The keep-alive ping is due.
    pub ping: bool,
    /// A traffic order is for it (taken with [`Bell::take_traffic`]).
    pub traffic: bool,
}

impl Bell {
    pub fn new() -> Bell {
        Bell::default()
    }

    fn lock(&self) -> MutexGuard<'_, Rung> {
        // A panic while holding this lock leaves the state consistent (plain fields).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What has been rung, left in place (a ping until [`Bell::pinged`]); the task in
    /// `cx` is woken by the next ring.
    pub fn poll(&self, cx: &mut Context<'_>) -> Rings {
        let mut rung = self.lock();
        if !rung.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            rung.waker = Some(cx.waker().clone());
        }
        Rings { stop: rung.stop, close: rung.close, ping: rung.ping, traffic: rung.traffic }
    }

    /// Whether a traffic order was rung, taking it.
    pub fn take_traffic(&self) -> bool {
        std::mem::take(&mut self.lock().traffic)
    }

    /// Ring the ping at `due` (`None`: no more pings), instead of any ping rung already.
    pub fn ping_at(&self, due: Option<Instant>) {
        let mut rung = self.lock();
        rung.ping_due = due;
        rung.ping = false;
    }

    /// The ping has been handled: ring the next one `keep_alive` after it was due.
    pub fn pinged(&self, keep_alive: Duration) {
        let mut rung = self.lock();
        rung.ping = false;
        rung.ping_due = rung.ping_due.map(|due| due + keep_alive);
    }

    fn ring(&self, set: impl FnOnce(&mut Rung)) {
        self.ring_if(|rung| {
            set(rung);
            true
        });
    }

    /// Change what is rung; wake the task (outside the lock) when `set` says it rang.
    fn ring_if(&self, set: impl FnOnce(&mut Rung) -> bool) {
        let waker = {
            let mut rung = self.lock();
            if set(&mut rung) {
                rung.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Keep the connection's number (see [`Bell::number`]).
    pub fn set_number(&self, n: u64) {
        self.number.store(n, Ordering::Relaxed);
    }

    /// The connection's number, as [`Bell::set_number`] kept it.
    pub fn number(&self) -> u64 {
        self.number.load(Ordering::Relaxed)
    }

    /// Whether the connection task still holds this bell.
    fn answered(self: &Arc<Bell>) -> bool {
        Arc::strong_count(self) > 1
    }
}

/// The bells of a worker's held connections, oldest first (some may have died since).
#[derive(Debug, Default)]
pub struct HeldConnections {
    bells: Mutex<VecDeque<Arc<Bell>>>,
}

/// Like dropped close handles: when the worker lets go of its held, whoever is still
/// on it stops.
impl Drop for HeldConnections {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl HeldConnections {
    pub fn new() -> HeldConnections {
        HeldConnections::default()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Bell>>> {
        self.bells.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A bell for a connection to be held, put at the back of the held.
    pub fn enlist(&self) -> Arc<Bell> {
        let bell = Arc::new(Bell::new());
        self.lock().push_back(bell.clone());
        bell
    }

    /// Forget the connections that have ended; returns how many are left.
    pub fn prune(&self) -> usize {
        let mut bells = self.lock();
        bells.retain(Bell::answered);
        bells.len()
    }

    /// Give the oldest live connection its close order and take it off the held;
    /// `false` when none is left.
    pub fn close_oldest(&self, cmd: CloseCommand) -> bool {
        let mut bells = self.lock();
        while let Some(bell) = bells.pop_front() {
            // A connection that died since the phase began is skipped.
            if bell.answered() {
                bell.ring(|rung| rung.close = Some(cmd));
                return true;
            }
        }
        false
    }

    /// Ring the traffic order on every live connection whose number is in `clients`;
    /// returns how many were rung.
    pub fn ring_traffic(&self, clients: Clients) -> u64 {
        let mut rung = 0;
        for bell in self.lock().iter().filter(|b| b.answered() && clients.contains(b.number())) {
            bell.ring(|r| r.traffic = true);
            rung += 1;
        }
        rung
    }

    /// Tell every connection on the held to stop, and empty it.
    pub fn stop_all(&self) {
        for bell in std::mem::take(&mut *self.lock()) {
            bell.ring(|rung| rung.stop = true);
        }
    }

    /// Ring the ping of every connection whose ping is due at `now`.
    fn ring_due_pings(&self, now: Instant) {
        for bell in self.lock().iter() {
            bell.ring_if(|rung| {
                let due = !rung.ping && rung.ping_due.is_some_and(|due| due <= now);
                rung.ping |= due;
                due
            });
        }
    }
}

/// How often the keep-alive tick looks for due pings: a twentieth of the interval
/// (a ping is at most that late), from 5 ms to 1 s.
pub fn tick_period(keep_alive: Duration) -> Duration {
    (keep_alive / 20).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

/// The worker's keep-alive tick: rings the due pings every `period` until the held is
/// dropped.
pub async fn keep_alive(held: Weak<HeldConnections>, period: Duration) {
    let mut ticks = interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(held) = held.upgrade() else { return };
        held.ring_due_pings(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;
    use crate::plan::CloseMode;

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(0.into()));
        (counter.clone(), Waker::from(counter))
    }

    fn wakes(counter: &Counter) -> usize {
        counter.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn cmd() -> CloseCommand {
        CloseCommand { how: CloseMode::Fin, scheduled: Instant::now(), timeout: Duration::from_secs(1), fill: false }
    }

    #[test]
    fn closes_go_to_the_oldest_live_connection_and_wake_it() {
        let held = HeldConnections::new();
        let dead = held.enlist();
        let (first, second) = (held.enlist(), held.enlist());
        drop(dead);
        let (count, waker) = counter();
        assert_eq!(first.poll(&mut Context::from_waker(&waker)), Rings::default());
        assert!(held.close_oldest(cmd()));
        assert_eq!(wakes(&count), 1);
        assert!(first.poll(&mut Context::from_waker(&waker)).close.is_some());
        assert!(second.poll(&mut Context::from_waker(&waker)).close.is_none());
        assert_eq!(held.prune(), 1);
        drop(second);
        assert!(!held.close_oldest(cmd()), "no live connection is left");
    }

    #[test]
    fn stop_reaches_every_connection_on_the_roster() {
        let held = HeldConnections::new();
        let bells = [held.enlist(), held.enlist()];
        held.stop_all();
        assert_eq!(held.prune(), 0);
        let (_, waker) = counter();
        assert!(bells.iter().all(|b| b.poll(&mut Context::from_waker(&waker)).stop));
    }

    #[test]
    fn pings_ring_when_due_and_every_keep_alive_after() {
        let held = HeldConnections::new();
        let bell = held.enlist();
        let (count, waker) = counter();
        let now = Instant::now();
        bell.ping_at(Some(now + Duration::from_secs(10)));
        bell.poll(&mut Context::from_waker(&waker));
        held.ring_due_pings(now);
        assert_eq!((wakes(&count), bell.poll(&mut Context::from_waker(&waker)).ping), (0, false), "not due yet");
        held.ring_due_pings(now + Duration::from_secs(10));
        assert_eq!((wakes(&count), bell.poll(&mut Context::from_waker(&waker)).ping), (1, true));
        held.ring_due_pings(now + Duration::from_secs(11));
        assert_eq!(wakes(&count), 1, "rung until handled, woken once");
        bell.pinged(Duration::from_secs(10));
        held.ring_due_pings(now + Duration::from_secs(19));
        assert_eq!((wakes(&count), bell.poll(&mut Context::from_waker(&waker)).ping), (1, false), "next one not due");
        held.ring_due_pings(now + Duration::from_secs(20));
        assert_eq!(wakes(&count), 2, "due keep_alive after the last one was due");
        bell.ping_at(None);
        assert!(!bell.poll(&mut Context::from_waker(&waker)).ping, "the rung ping is taken back");
        held.ring_due_pings(now + Duration::from_secs(60));
        assert_eq!(wakes(&count), 2, "no more pings");
    }

    /// With Arc's two counts, a bell is one 128-byte malloc chunk (112 before it kept the
    /// connection number for reconnects; a oneshot channel for the close order alone was 112).
    #[test]
    fn a_bell_stays_small() {
        assert!(std::mem::size_of::<Bell>() <= 96, "a bell is {} bytes", std::mem::size_of::<Bell>());
    }

    #[test]
    fn the_tick_period_is_a_twentieth_of_keep_alive_within_bounds() {
        assert_eq!(tick_period(Duration::from_secs(1)), Duration::from_millis(50));
        assert_eq!(tick_period(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(tick_period(Duration::from_millis(20)), Duration::from_millis(5));
    }
}
