//! The engine: runs a [`Plan`]'s phases against a target and returns a [`RunReport`].
//!
//! - [`connection`]: one task per client connection; it reports [`connection::Event`]s.
//! - [`pacing`]: open-loop schedules for connects and closes.
//! - [`collector`]: a phase's measurements, folded from events.
//! - [`census`]: client- and server-side state censuses through the probe.
//!
//! The engine never prints: live progress goes out on a `watch` channel that the CLI
//! renders. Shutdown follows mini-redis: a [`CancellationToken`] ends the current phase
//! early (the report is still built), then every connection task is cancelled and the
//! [`TaskTracker`] drained under a deadline.

pub mod census;
pub mod collector;
pub mod connection;
pub mod pacing;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use probe::{KernelCounters, Prober, SockStat};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::NofileRaise;
use crate::plan::{Action, CloseAmount, ClosePlan, ConnectPlan, Plan};
use crate::report::{CensusSample, Latencies, LimitsReport, Outcome, PhaseReport, RunReport, ScenarioInfo, SCHEMA};
use census::Censuses;
use collector::Collector;
use connection::{Attempt, CloseCommand, ConnSpec, Event};
use pacing::Pacer;

/// What the engine needs besides the plan: the resolved target and the environment.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The address to connect to (the embedded target's bound address when embedded).
    pub target: SocketAddr,
    pub embedded: bool,
    /// Client source addresses, used round-robin; empty for the kernel's choice.
    pub sources: Vec<IpAddr>,
    pub nofile: NofileRaise,
    pub descriptors_needed: u64,
    /// This process's worker index (for `{worker}` in client ids).
    pub worker: u32,
}

/// A live view of the run, for the progress line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub phase_index: usize,
    pub phase_count: usize,
    pub phase_name: String,
    pub kind: &'static str,
    /// Operations planned / started / succeeded / failed in this phase.
    pub planned: u64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Connections sockcap holds open.
    pub open: u64,
    pub phase_elapsed: Duration,
    /// Client-side ESTABLISHED at the last census.
    pub established: Option<u64>,
    /// Client-side TIME_WAIT at the last census.
    pub time_wait: Option<u64>,
}

/// How often the progress channel is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long connection tasks get to finish when the run ends.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Run every phase of `plan`; stops early, with a partial report, when `shutdown` fires.
pub async fn run(
    plan: &Plan,
    ctx: RunContext,
    shutdown: CancellationToken,
    progress: watch::Sender<Progress>,
) -> RunReport {
    let started_at = SystemTime::now();
    let mut engine = Engine::new(plan, &ctx, progress);
    let mut phases = Vec::with_capacity(plan.phases.len());
    let mut outcome = Outcome::Completed;
    for (index, phase) in plan.phases.iter().enumerate() {
        let report = engine.run_phase(index, phase, &shutdown).await;
        phases.push(report);
        if shutdown.is_cancelled() {
            outcome = Outcome::Interrupted;
            break;
        }
    }
    engine.finish().await;
    let (probe_backend, probe_warning) = engine.censuses.backend();
    let mut report = RunReport {
        schema: SCHEMA.to_string(),
        sockcap_version: env!("CARGO_PKG_VERSION").to_string(),
        passed: false,
        outcome,
        scenario: ScenarioInfo {
            name: plan.name.clone(),
            file: plan.file.display().to_string(),
            target: ctx.target.to_string(),
            embedded_target: ctx.embedded,
            protocol: plan.protocol.to_string(),
            sources: ctx.sources.iter().map(ToString::to_string).collect(),
        },
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        duration_ms: engine.run_start.elapsed().as_millis() as u64,
        limits: LimitsReport {
            nofile_soft_before: ctx.nofile.soft_before,
            nofile_soft_after: ctx.nofile.soft_after,
            nofile_hard: ctx.nofile.hard,
            descriptors_needed: ctx.descriptors_needed,
            in_force: probe::Limits::read(),
        },
        probe_backend,
        probe_warning,
        notes: engine.notes,
        phases,
    };
    report.passed = outcome == Outcome::Completed && report.failures().next().is_none();
    report.notes.extend(crate::report::findings(&report));
    report
}

/// The state of a run between phases.
struct Engine<'p> {
    plan: &'p Plan,
    spec: Arc<ConnSpec>,
    sources: Vec<IpAddr>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Close handles of held connections, oldest first (some may have died since).
    held: VecDeque<oneshot::Sender<CloseCommand>>,
    /// Connections open right now, as far as the events tell.
    open: u64,
    /// Connection numbers handed out so far.
    next_n: u64,
    conn_stop: CancellationToken,
    tracker: TaskTracker,
    censuses: Censuses,
    run_start: Instant,
    progress: watch::Sender<Progress>,
    notes: Vec<String>,
}

/// What a phase does between its start and end, as one loop drives it.
enum Driver {
    Connect { pacer: Pacer, plan: ConnectPlan, permits: Arc<Semaphore> },
    Close { pacer: Pacer, plan: ClosePlan, sent: u64 },
    Wait { until: Instant },
}

impl Driver {
    /// True when the phase's work is done (all operations issued and answered).
    fn finished(&self, collected: &Collector) -> bool {
        match self {
            Driver::Connect { pacer, .. } => pacer.finished() && collected.outcomes >= pacer.total(),
            Driver::Close { pacer, sent, .. } => pacer.finished() && collected.outcomes >= *sent,
            Driver::Wait { until } => Instant::now() >= *until,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        match self {
            Driver::Connect { pacer, .. } | Driver::Close { pacer, .. } => pacer.next_due(),
            Driver::Wait { until } => Some(*until),
        }
    }

    /// When the phase gives up on outcomes that never came (a guard: every connection
    /// task reports within its own timeout, so this only fires on a bug).
    fn give_up_at(&self) -> Option<Instant> {
        const GRACE: Duration = Duration::from_secs(5);
        match self {
            Driver::Connect { pacer, plan, .. } => Some(pacer.scheduled(pacer.total()) + plan.timeout + GRACE),
            Driver::Close { pacer, plan, .. } => Some(pacer.scheduled(pacer.total()) + plan.timeout + GRACE),
            Driver::Wait { .. } => None,
        }
    }

    fn planned(&self) -> u64 {
        match self {
            Driver::Connect { pacer, .. } | Driver::Close { pacer, .. } => pacer.total(),
            Driver::Wait { .. } => 0,
        }
    }

    fn attempted(&self) -> u64 {
        match self {
            Driver::Connect { pacer, .. } => pacer.issued(),
            Driver::Close { sent, .. } => *sent,
            Driver::Wait { .. } => 0,
        }
    }
}

impl<'p> Engine<'p> {
    fn new(plan: &'p Plan, ctx: &RunContext, progress: watch::Sender<Progress>) -> Engine<'p> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let spec = Arc::new(ConnSpec {
            target: ctx.target,
            protocol: plan.protocol,
            mqtt: plan.mqtt.clone(),
            worker: ctx.worker,
        });
        let prober = Prober::new();
        let mut notes = Vec::new();
        if let Some(warning) = prober.warning() {
            notes.push(warning.to_string());
        }
        Engine {
            plan,
            spec,
            sources: ctx.sources.clone(),
            events_tx,
            events_rx,
            held: VecDeque::new(),
            open: 0,
            next_n: 0,
            conn_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            censuses: Censuses::new(prober, ctx.target),
            run_start: Instant::now(),
            progress,
            notes,
        }
    }

    fn driver_for(&mut self, action: &Action, start: Instant) -> Driver {
        match action {
            Action::Connect(c) => Driver::Connect {
                pacer: Pacer::new(start, c.rate, c.count),
                plan: c.clone(),
                permits: Arc::new(Semaphore::new(c.max_inflight)),
            },
            Action::Close(c) => {
                self.held.retain(|h| !h.is_closed());
                let held = self.held.len() as u64;
                let count = match c.amount {
                    CloseAmount::All => held,
                    CloseAmount::Count(n) => n.min(held),
                    CloseAmount::Fraction(f) => ((held as f64) * f).round() as u64,
                };
                Driver::Close { pacer: Pacer::new(start, c.rate, count), plan: c.clone(), sent: 0 }
            }
            Action::Hold(d) | Action::Sleep(d) => Driver::Wait { until: start + *d },
        }
    }

    async fn run_phase(
        &mut self,
        index: usize,
        phase: &crate::plan::PhasePlan,
        shutdown: &CancellationToken,
    ) -> PhaseReport {
        let counters_before = KernelCounters::read().unwrap_or_default();
        let start = Instant::now();
        let mut driver = self.driver_for(&phase.action, start);
        let mut collected = Collector::new();
        let mut samples = Vec::new();
        let every = self.plan.sample_every;
        let mut sampler = interval_at(start + every, every);
        sampler.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ticker = interval_at(start, PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut last_census = None;
        let give_up_at = driver.give_up_at();
        while !driver.finished(&collected) {
            let next_due = driver.next_due();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = self.events_rx.recv() => self.apply(&mut collected, event),
                _ = sleep_until(next_due.unwrap_or(start)), if next_due.is_some() => self.issue_due(&mut driver),
                _ = sampler.tick() => {
                    let (pair, problem) = self.censuses.take().await;
                    self.note_once(problem);
                    last_census = Some(pair.client);
                    samples.push(CensusSample {
                        t_ms: self.ms_since_start(),
                        client: pair.client,
                        server: pair.server,
                        succeeded: collected.succeeded,
                        failed: collected.failures(),
                        open: self.open,
                    });
                }
                _ = ticker.tick() => self.publish(index, phase, &driver, &collected, start, last_census),
                _ = sleep_until(give_up_at.unwrap_or(start)), if give_up_at.is_some() => {
                    let missing = driver.attempted().saturating_sub(collected.outcomes);
                    self.notes.push(format!("phase `{}`: {missing} operations never reported an outcome", phase.name));
                    break;
                }
            }
        }
        // Events already queued belong to this phase.
        while let Ok(event) = self.events_rx.try_recv() {
            self.apply(&mut collected, event);
        }
        let (census, problem) = self.censuses.take().await;
        self.note_once(problem);
        let counters_after = KernelCounters::read().unwrap_or_default();
        self.publish(index, phase, &driver, &collected, start, Some(census.client));
        let duration = start.elapsed();
        let active = collected.last_success.map_or(duration, |t| t.saturating_duration_since(start));
        let mut report = PhaseReport {
            name: phase.name.clone(),
            kind: phase.action.kind().to_string(),
            started_ms: start.saturating_duration_since(self.run_start).as_millis() as u64,
            duration_ms: duration.as_millis() as u64,
            planned: driver.planned(),
            attempted: driver.attempted(),
            succeeded: collected.succeeded,
            achieved_rate_per_s: rate(collected.succeeded, active),
            open_at_end: self.open,
            drops: collected.drops,
            census,
            samples,
            latency_us: Latencies {
                connect: collected.connect.summary(),
                handshake: collected.handshake.summary(),
                close: collected.close.summary(),
            },
            errors: collected.errors.to_map(),
            other_errnos: collected.errors.other_errnos.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            kernel: counters_before.delta(&counters_after),
            sockstat: SockStat::read().unwrap_or_default(),
            expectations: Vec::new(),
        };
        report.expectations = phase.expect.iter().map(|e| e.judge(&report)).collect();
        report
    }

    fn apply(&mut self, collected: &mut Collector, event: Event) {
        let change = collected.record(event);
        self.open = self.open.saturating_add_signed(change);
    }

    /// Start every operation whose scheduled instant has come.
    fn issue_due(&mut self, driver: &mut Driver) {
        let now = Instant::now();
        match driver {
            Driver::Connect { pacer, plan, permits } => {
                for (_, scheduled) in pacer.take_due(now) {
                    self.spawn_connection(scheduled, plan, permits);
                }
            }
            Driver::Close { pacer, plan, sent } => {
                for (_, scheduled) in pacer.take_due(now) {
                    let cmd = CloseCommand { how: plan.how, scheduled, timeout: plan.timeout };
                    // A connection that died since the phase began is skipped.
                    while let Some(handle) = self.held.pop_front() {
                        if handle.send(cmd).is_ok() {
                            *sent += 1;
                            break;
                        }
                    }
                }
            }
            Driver::Wait { .. } => {}
        }
    }

    fn spawn_connection(&mut self, scheduled: Instant, plan: &ConnectPlan, permits: &Arc<Semaphore>) {
        let n = self.next_n;
        self.next_n += 1;
        let source = (!self.sources.is_empty()).then(|| self.sources[(n % self.sources.len() as u64) as usize]);
        let attempt = Attempt { n, scheduled, deadline: scheduled + plan.timeout, source };
        let (close_tx, close_rx) = oneshot::channel();
        self.held.push_back(close_tx);
        self.tracker.spawn(connection::run(
            self.spec.clone(),
            attempt,
            permits.clone(),
            self.events_tx.clone(),
            close_rx,
            self.conn_stop.clone(),
        ));
    }

    fn publish(
        &self,
        index: usize,
        phase: &crate::plan::PhasePlan,
        driver: &Driver,
        collected: &Collector,
        start: Instant,
        census: Option<probe::StateCounts>,
    ) {
        let established = census.map(|c| c.get(probe::TcpState::Established));
        let time_wait = census.map(|c| c.get(probe::TcpState::TimeWait));
        self.progress.send_replace(Progress {
            phase_index: index,
            phase_count: self.plan.phases.len(),
            phase_name: phase.name.clone(),
            kind: phase.action.kind(),
            planned: driver.planned(),
            attempted: driver.attempted(),
            succeeded: collected.succeeded,
            failed: collected.failures(),
            open: self.open,
            phase_elapsed: start.elapsed(),
            established,
            time_wait,
        });
    }

    fn note_once(&mut self, problem: Option<String>) {
        if let Some(problem) = problem {
            if !self.notes.contains(&problem) {
                self.notes.push(problem);
            }
        }
    }

    fn ms_since_start(&self) -> u64 {
        self.run_start.elapsed().as_millis() as u64
    }

    /// Close every connection still open and wait for the tasks, under a deadline.
    async fn finish(&mut self) {
        self.conn_stop.cancel();
        self.held.clear();
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
