//! A worker: runs its [`Shard`] of every phase of a plan — starts, holds and closes its
//! connections — and reports each phase as a [`PhaseReport`] without census (the
//! coordinator takes the census for all workers at once). It waits for the
//! coordinator's order before each phase, so that no worker starts phase k+1 before
//! every worker has finished phase k.

pub mod action;
pub mod collector;
pub mod held;
pub mod pacing;
mod recovery;
mod tally;
mod traffic;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use probe::Prober;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::census::Censuses;
use crate::engine::connection::{self, Attempt, CloseCommand, ConnSpec, Event, Links, NO_SERVER_KEEP_ALIVE};
use crate::engine::messages::{instant_of_unix_us, Order, WorkerMsg, WorkerProgress};
use crate::failure::ErrorKind;
use crate::plan::{PhasePlan, Plan};
use crate::report::{Exhaustion, Latencies, PhaseReport, Recovery};
use crate::shard::Shard;
use crate::sources::Sources;
use action::{ActionDriver, GRACE};
use collector::Collector;
use held::{Bell, HeldConnections};

/// What a worker needs besides the plan.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The address to connect to (the embedded target's bound address when embedded).
    pub target: SocketAddr,
    /// Where connections bind, by connection number.
    pub sources: Sources,
    /// This worker's share of every phase; its index is also `{worker}` in client ids.
    pub shard: Shard,
    /// Host shards of the run (`--shard I/N`: N; 1 on one host). A host binds its own
    /// sources by its own connection count: connection `n` is the host's `n / hosts`-th.
    pub hosts: u32,
}

/// The worker's end of the link: orders in, messages out.
#[derive(Debug)]
pub struct WorkerLink {
    pub orders: mpsc::UnboundedReceiver<Order>,
    pub out: mpsc::UnboundedSender<WorkerMsg>,
}

/// SO_SNDBUF when a phase fills send buffers: about 175 KB per filled connection
/// (measured: ~128 KB lands in the target's receive buffer, ~47 KB stays unsent).
const FILL_SNDBUF: u32 = 4096;

/// How often the worker's running counts go to the coordinator.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How long connection tasks get to finish when the run ends.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Run the worker's share of every phase, each when the coordinator orders it; stops
/// at a [`Order::Stop`], when the coordinator goes away, or when `shutdown` fires, and
/// closes its connections at [`Order::Finish`].
pub async fn run(plan: &Plan, ctx: WorkerContext, link: WorkerLink, shutdown: CancellationToken) {
    let WorkerLink { mut orders, out } = link;
    let (start_tx, mut starts) = mpsc::unbounded_channel();
    let finish = CancellationToken::new();
    let (stop, finish_order) = (shutdown.clone(), finish.clone());
    let order_reader = tokio::spawn(async move {
        while let Some(order) = orders.recv().await {
            match order {
                Order::Start { phase, at_unix_us } => {
                    let _ = start_tx.send((phase, at_unix_us));
                }
                Order::Stop => stop.cancel(),
                Order::Finish => finish_order.cancel(),
            }
        }
        // The coordinator is gone: nobody will read what comes next.
        stop.cancel();
        finish_order.cancel();
    });
    let mut worker = Worker::new(plan, &ctx, out.clone());
    for (index, phase) in plan.phases.iter().enumerate() {
        let _ = out.send(WorkerMsg::Ready { phase: index });
        let start = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Stopped before this phase began: report it empty all the same. The
                // coordinator may have ordered its start already (the stop and the
                // start crossed), and then waits for every worker's report of it.
                let report = Box::new(PhaseReport::empty(&phase.name, phase.action.kind()));
                let _ = out.send(WorkerMsg::Phase { phase: index, report });
                break;
            }
            start = starts.recv() => match start {
                Some((phase, at)) if phase == index => instant_of_unix_us(at),
                _ => break,
            },
        };
        let report = worker.run_phase(index, phase, start, &shutdown).await;
        let _ = out.send(WorkerMsg::Phase { phase: index, report: Box::new(report) });
        if shutdown.is_cancelled() {
            break;
        }
    }
    // Keep the connections until the coordinator has taken its last census.
    finish.cancelled().await;
    worker.finish().await;
    order_reader.abort();
    let _ = out.send(WorkerMsg::Done { notes: worker.notes });
}

/// The state of a worker between phases.
struct Worker<'p> {
    plan: &'p Plan,
    spec: Arc<ConnSpec>,
    sources: Sources,
    shard: Shard,
    hosts: u64,
    out: mpsc::UnboundedSender<WorkerMsg>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// The bells of held connections, oldest first (some may have died since).
    connections: Arc<HeldConnections>,
    /// Rings the held connections' keep-alive pings (MQTT with a keep-alive).
    keep_alive: Option<JoinHandle<()>>,
    /// Connections open right now, as far as the events tell.
    open: u64,
    /// Lost connections between their loss and their return (or giving up, or a close
    /// order): down, across phases.
    down: u64,
    conn_stop: CancellationToken,
    tracker: TaskTracker,
    /// For the TIME_WAIT count at the moment the ports run out.
    censuses: Censuses,
    notes: Vec<String>,
}

impl<'p> Worker<'p> {
    fn new(plan: &'p Plan, ctx: &WorkerContext, out: mpsc::UnboundedSender<WorkerMsg>) -> Worker<'p> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let spec = Arc::new(ConnSpec {
            target: ctx.target,
            protocol: plan.protocol,
            mqtt: plan.mqtt.clone(),
            worker: ctx.shard.index,
            on_eof: plan.client_on_eof,
            sndbuf: plan.fills().then_some(FILL_SNDBUF),
            reconnect: plan.reconnect,
            server_keep_alive_s: AtomicU32::new(NO_SERVER_KEEP_ALIVE),
            tls: plan.transport.client.clone(),
            ws: plan.transport.ws.clone(),
            traffic: std::sync::Mutex::new(None),
        });
        let connections = Arc::new(HeldConnections::new());
        let pinging = spec.protocol.ping().is_some() && !spec.mqtt.keep_alive.is_zero();
        let keep_alive = pinging.then(|| {
            tokio::spawn(held::keep_alive(Arc::downgrade(&connections), held::tick_period(spec.mqtt.keep_alive)))
        });
        Worker {
            plan,
            spec,
            sources: ctx.sources.clone(),
            shard: ctx.shard,
            hosts: u64::from(ctx.hosts.max(1)),
            out,
            events_tx,
            events_rx,
            connections,
            keep_alive,
            open: 0,
            down: 0,
            conn_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            censuses: Censuses::new(Prober::new(), ctx.target),
            notes: Vec::new(),
        }
    }

    fn driver_for(&mut self, index: usize, phase: &PhasePlan, start: Instant) -> ActionDriver {
        let held = self.connections.prune() as u64;
        let sources = match &phase.sources {
            Some(addrs) => Sources::new(addrs.clone(), self.sources.ports),
            None => self.sources.clone(),
        };
        // The shards take turns across phases: closes by count then fall evenly on what
        // each holds (see Plan::first_operation).
        let shard = self.shard.offset_by(self.plan.first_operation(index));
        ActionDriver::new(&phase.action, start, held, sources, shard)
    }

    async fn run_phase(
        &mut self,
        index: usize,
        phase: &PhasePlan,
        start: Instant,
        shutdown: &CancellationToken,
    ) -> PhaseReport {
        sleep_until(start).await;
        let mut driver = self.driver_for(index, phase, start);
        if let ActionDriver::Traffic { rung, .. } = &mut driver {
            *rung = self.order_traffic(index, &phase.action, start);
        }
        // Connection numbers are global: the phase's first is the count of every
        // connection the phases before it started, in every shard.
        let first_n = self.plan.connections_before(index);
        let mut exhaustion_census = None;
        let mut collected = Collector::new(start, self.plan.reconnect.is_some());
        let mut ticker = interval_at(start, PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let give_up_at = driver.give_up_at();
        // While outcomes keep coming, the phase is not stuck, however late they are.
        let mut last_event = start;
        while !driver.finished(&collected) {
            let next_due = driver.next_due();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = self.events_rx.recv() => {
                    last_event = Instant::now();
                    self.apply(&mut collected, event);
                    if collected.first_addr_not_available.is_some() && exhaustion_census.is_none() {
                        // The ports just ran out: count the TIME_WAIT that holds them, now.
                        let source = driver.single_source();
                        exhaustion_census = Some((self.censuses.client_from(source).await, probe::Limits::read()));
                    }
                }
                _ = sleep_until(next_due.unwrap_or(start)), if next_due.is_some() => {
                    self.issue_due(&mut driver, first_n);
                }
                _ = ticker.tick() => self.publish(index, &driver, &collected),
                _ = sleep_until(give_up_at.unwrap_or(start).max(last_event + GRACE)), if give_up_at.is_some() => {
                    // Counted as errors: a phase with operations unaccounted for did not pass.
                    let missing = driver.attempted().saturating_sub(driver.outcomes(&collected));
                    collected.errors.add(ErrorKind::NoOutcome, missing);
                    self.notes.push(format!(
                        "phase `{}`: {missing} operations never reported an outcome (errors.no_outcome); \
                         this is a fault of sockcap's, please report it",
                        phase.name
                    ));
                    break;
                }
            }
        }
        // Events already queued belong to this phase.
        while let Ok(event) = self.events_rx.try_recv() {
            self.apply(&mut collected, event);
        }
        // Lost and not back yet: the phase did not end with every client up.
        collected.errors.add(ErrorKind::StillDown, self.down);
        self.publish(index, &driver, &collected);
        let duration = start.elapsed();
        let active = collected.last_success.map_or(duration, |t| t.saturating_duration_since(start));
        let succeeded = driver.succeeded(&collected);
        let exhaustion = collected.first_addr_not_available.map(|at| Exhaustion {
            after_connections: collected.connected_before_exhaustion,
            after_ms: at.saturating_duration_since(start).as_millis() as u64,
            // No census right then: 0, flagged unobserved below.
            time_wait: exhaustion_census.as_ref().and_then(|(c, _)| *c).map_or(0, |c| c.get(probe::TcpState::TimeWait)),
            recovered_after_ms: collected.recovered_at.map(|r| r.saturating_duration_since(at).as_millis() as u64),
            failed: collected.errors.get(crate::failure::ErrorKind::AddrNotAvailable),
            ip_local_port_range: exhaustion_census.as_ref().and_then(|(_, l)| l.ip_local_port_range),
            tcp_tw_reuse: exhaustion_census.as_ref().and_then(|(_, l)| l.tcp_tw_reuse),
        });
        let mut unobserved = crate::report::Unobserved::default();
        if exhaustion.is_some() && exhaustion_census.as_ref().is_none_or(|(c, _)| c.is_none()) {
            unobserved
                .mark("exhaustion.time_wait", "the client-side census when the ports ran out failed or was not taken");
        }
        PhaseReport {
            name: phase.name.clone(),
            kind: phase.action.kind().to_string(),
            started_ms: 0,
            duration_ms: duration.as_millis() as u64,
            planned: driver.planned(),
            attempted: driver.attempted(),
            succeeded,
            achieved_rate_per_s: rate(succeeded, active),
            open_at_end: self.open,
            drops: collected.drops,
            reconnect_attempts: collected.reconnect_attempts,
            reconnected: collected.reconnected,
            // Connections still down from an earlier phase show here too, with no loss of this one.
            recovery: match collected.recoveries.report() {
                Some(r) => Some(Recovery { down_at_end: self.down, ..r }),
                None => (self.down > 0).then(|| Recovery { down_at_end: self.down, ..Recovery::default() }),
            },
            peer_closed: collected.peer_closed,
            ports_taken: collected.ports_taken,
            tls_resumed: collected.tls_resumed,
            census: Default::default(),
            samples: Vec::new(),
            latency_us: Latencies {
                connect: collected.connect.summary(),
                tls: collected.tls.summary(),
                ws: collected.ws.summary(),
                handshake: collected.handshake.summary(),
                close: collected.close.summary(),
                lateness: collected.lateness.summary(),
            },
            errors: collected.errors.to_map(),
            other_errnos: collected.errors.other_errnos.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            kernel: Default::default(),
            sockstat: Default::default(),
            exhaustion,
            timeline_100ms: std::mem::take(&mut collected.timeline),
            target_fds: None,
            target: None,
            kernel_memory: Default::default(),
            generator: None,
            invalid: None,
            unobserved,
            events: Vec::new(),
            messages: collected.messages.report(),
            expectations: Vec::new(),
        }
    }

    fn apply(&mut self, collected: &mut Collector, event: Event) {
        let change = collected.record(event);
        self.open = self.open.saturating_add_signed(change);
        if self.plan.reconnect.is_some() {
            match event {
                Event::Lost { .. } => self.down += 1,
                Event::Reconnected { .. } | Event::GaveUp | Event::ClosedWhileDown => {
                    self.down = self.down.saturating_sub(1)
                }
                _ => {}
            }
        }
    }

    /// Start every operation whose scheduled instant has come.
    fn issue_due(&mut self, driver: &mut ActionDriver, first_n: u64) {
        let now = Instant::now();
        match driver {
            ActionDriver::Connect { pacer, timeout, permits, then_close, sources, .. } => {
                for (i, scheduled) in pacer.take_due(now) {
                    let n = first_n + i;
                    let attempt = Attempt {
                        n,
                        scheduled,
                        deadline: scheduled + *timeout,
                        // Churn: the kernel's port choice (see crate::sources).
                        source: sources.local_for(n / self.hosts, then_close.is_some()),
                        then_close: *then_close,
                        permits: permits.clone(),
                    };
                    self.spawn_connection(Box::new(attempt));
                }
            }
            ActionDriver::Close { pacer, how, timeout, fill, sent } => {
                for (_, scheduled) in pacer.take_due(now) {
                    let cmd = CloseCommand { how: *how, scheduled, timeout: *timeout, fill: *fill };
                    if self.connections.close_oldest(cmd) {
                        *sent += 1;
                    }
                }
            }
            ActionDriver::Wait { .. } | ActionDriver::Traffic { .. } => {}
        }
    }

    fn spawn_connection(&mut self, attempt: Box<Attempt>) {
        // A churn cycle is never held: its bell is its own.
        let bell = match attempt.then_close {
            None => self.connections.enlist(),
            Some(_) => Arc::new(Bell::new()),
        };
        let links =
            Links { spec: self.spec.clone(), events: self.events_tx.clone(), bell, stop: self.conn_stop.clone() };
        self.tracker.spawn(connection::run(links, attempt));
    }

    fn publish(&self, index: usize, driver: &ActionDriver, collected: &Collector) {
        let _ = self.out.send(WorkerMsg::Progress(WorkerProgress {
            phase: index,
            planned: driver.planned(),
            attempted: driver.attempted(),
            succeeded: driver.succeeded(collected),
            failed: collected.failures(),
            open: self.open,
            errors: collected.errors.to_map().into_iter().filter(|(_, n)| *n > 0).collect(),
            drops: collected.drops,
            reconnected: collected.reconnected,
        }));
    }

    /// Close every connection still open and wait for the tasks, under a deadline.
    async fn finish(&mut self) {
        self.conn_stop.cancel();
        self.connections.stop_all();
        if let Some(tick) = self.keep_alive.take() {
            tick.abort();
        }
        self.tracker.close();
        if tokio::time::timeout(DRAIN_DEADLINE, self.tracker.wait()).await.is_err() {
            self.notes.push(format!(
                "{} connection tasks did not end within {}s of the run's end",
                self.tracker.len(),
                DRAIN_DEADLINE.as_secs()
            ));
        }
    }
}

fn rate(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if n == 0 || secs <= 0.0 {
        return 0.0;
    }
    ((n as f64 / secs) * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::messages::unix_us_now;

    /// A stop that crosses the order to start a phase: the worker still reports that
    /// phase, or the coordinator (which ordered it) would wait for its report forever.
    #[tokio::test]
    async fn a_stop_crossing_a_start_still_reports_the_phase() {
        let toml = "name = \"t\"\ntarget = \"127.0.0.1:9\"\nprotocol = \"tcp\"\n\n[[phase]]\nname = \"one\"\nhold = \"10ms\"\n\n\
                    [[phase]]\nname = \"two\"\nhold = \"10s\"\n";
        let plan = Plan::from_toml(Path::new("t.toml"), toml).unwrap();
        let ctx = WorkerContext {
            target: "127.0.0.1:9".parse().unwrap(),
            sources: Sources::new(Vec::new(), crate::sources::DEFAULT_RANGE),
            shard: Shard::ALL,
            hosts: 1,
        };
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let (out, mut msgs) = mpsc::unbounded_channel();
        let worker = tokio::spawn(async move {
            run(&plan, ctx, WorkerLink { orders, out }, CancellationToken::new()).await;
        });
        async fn next(msgs: &mut mpsc::UnboundedReceiver<WorkerMsg>) -> WorkerMsg {
            tokio::time::timeout(Duration::from_secs(5), msgs.recv()).await.unwrap().unwrap()
        }
        assert!(matches!(next(&mut msgs).await, WorkerMsg::Ready { phase: 0 }));
        orders_tx.send(Order::Start { phase: 0, at_unix_us: unix_us_now() }).unwrap();
        loop {
            match next(&mut msgs).await {
                WorkerMsg::Phase { phase: 0, .. } => break,
                WorkerMsg::Progress(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(next(&mut msgs).await, WorkerMsg::Ready { phase: 1 }));
        orders_tx.send(Order::Start { phase: 1, at_unix_us: unix_us_now() + 200_000 }).unwrap();
        orders_tx.send(Order::Stop).unwrap();
        let reported = loop {
            match next(&mut msgs).await {
                WorkerMsg::Phase { phase, report } => break (phase, report.name),
                WorkerMsg::Progress(_) => {}
                other => panic!("phase two was not reported: {other:?}"),
            }
        };
        assert_eq!(reported, (1, "two".to_string()));
        orders_tx.send(Order::Finish).unwrap();
        assert!(matches!(next(&mut msgs).await, WorkerMsg::Done { .. }));
        worker.await.unwrap();
    }
}
