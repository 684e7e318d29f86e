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
pub mod driver;
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
use crate::plan::{PhasePlan, Plan};
use crate::report::{
    CensusSample, Exhaustion, Latencies, LimitsReport, Outcome, PhaseReport, RunReport, ScenarioInfo, SCHEMA,
};
use census::Censuses;
use collector::Collector;
use connection::{Attempt, CloseCommand, ConnSpec, Event};
use driver::Driver;

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

/// SO_SNDBUF when a phase fills send buffers: about 175 KB per filled connection
/// (measured: ~128 KB lands in the target's receive buffer, ~47 KB stays unsent).
const FILL_SNDBUF: u32 = 4096;

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
            netns: plan.netns.is_some(),
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

impl<'p> Engine<'p> {
    fn new(plan: &'p Plan, ctx: &RunContext, progress: watch::Sender<Progress>) -> Engine<'p> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let spec = Arc::new(ConnSpec {
            target: ctx.target,
            protocol: plan.protocol,
            mqtt: plan.mqtt.clone(),
            worker: ctx.worker,
            on_eof: plan.client_on_eof,
            sndbuf: plan.fills().then_some(FILL_SNDBUF),
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

    fn driver_for(&mut self, phase: &PhasePlan, start: Instant) -> Driver {
        self.held.retain(|h| !h.is_closed());
        let sources = phase.sources.clone().unwrap_or_else(|| self.sources.clone());
        Driver::new(&phase.action, start, self.held.len() as u64, sources)
    }

    async fn run_phase(&mut self, index: usize, phase: &PhasePlan, shutdown: &CancellationToken) -> PhaseReport {
        for sysctl in &phase.sysctls {
            if let Err(e) = crate::netns::write_sysctl(sysctl) {
                self.notes.push(format!("phase `{}`: {e}", phase.name));
            }
        }
        // The census as the phase begins, taken before its clock starts so that pacing
        // does not absorb the census's time.
        let first = self.sample(0, 0).await;
        let mut last_census = Some(first.client);
        let mut samples = vec![first];
        let counters_before = KernelCounters::read().unwrap_or_default();
        let start = Instant::now();
        let mut driver = self.driver_for(phase, start);
        let mut exhaustion_census = None;
        let mut collected = Collector::new();
        let every = self.plan.sample_every;
        let mut sampler = interval_at(start + every, every);
        sampler.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ticker = interval_at(start, PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let give_up_at = driver.give_up_at();
        while !driver.finished(&collected) {
            let next_due = driver.next_due();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(event) = self.events_rx.recv() => {
                    self.apply(&mut collected, event);
                    if collected.first_addr_not_available.is_some() && exhaustion_census.is_none() {
                        // The ports just ran out: count the TIME_WAIT that holds them, now.
                        let source = driver.single_source();
                        exhaustion_census = Some((self.censuses.client_from(source).await, probe::Limits::read()));
                    }
                }
                _ = sleep_until(next_due.unwrap_or(start)), if next_due.is_some() => self.issue_due(&mut driver),
                _ = sampler.tick() => {
                    let sample = self.sample(driver.succeeded(&collected), collected.failures()).await;
                    last_census = Some(sample.client);
                    samples.push(sample);
                }
                _ = ticker.tick() => self.publish(index, phase, &driver, &collected, start, last_census),
                _ = sleep_until(give_up_at.unwrap_or(start)), if give_up_at.is_some() => {
                    let missing = driver.attempted().saturating_sub(driver.outcomes(&collected));
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
        let succeeded = driver.succeeded(&collected);
        let exhaustion = collected.first_addr_not_available.map(|(_, at)| Exhaustion {
            after_connections: collected.connected_before_exhaustion,
            after_ms: at.saturating_duration_since(start).as_millis() as u64,
            time_wait: exhaustion_census.as_ref().map_or(0, |(c, _)| c.get(probe::TcpState::TimeWait)),
            recovered_after_ms: collected.recovered_at.map(|r| r.saturating_duration_since(at).as_millis() as u64),
            failed: collected.errors.get(crate::stats::ErrorKind::AddrNotAvailable),
            ip_local_port_range: exhaustion_census.as_ref().and_then(|(_, l)| l.ip_local_port_range),
            tcp_tw_reuse: exhaustion_census.as_ref().and_then(|(_, l)| l.tcp_tw_reuse),
        });
        let mut report = PhaseReport {
            name: phase.name.clone(),
            kind: phase.action.kind().to_string(),
            started_ms: start.saturating_duration_since(self.run_start).as_millis() as u64,
            duration_ms: duration.as_millis() as u64,
            planned: driver.planned(),
            attempted: driver.attempted(),
            succeeded,
            achieved_rate_per_s: rate(succeeded, active),
            open_at_end: self.open,
            drops: collected.drops,
            peer_closed: collected.peer_closed,
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
            exhaustion,
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
            Driver::Connect { pacer, timeout, permits, then_close, sources, .. } => {
                for (_, scheduled) in pacer.take_due(now) {
                    let n = self.next_n;
                    self.next_n += 1;
                    let source = (!sources.is_empty()).then(|| sources[(n % sources.len() as u64) as usize]);
                    let attempt =
                        Attempt { n, scheduled, deadline: scheduled + *timeout, source, then_close: *then_close };
                    self.spawn_connection(Box::new(attempt), permits);
                }
            }
            Driver::Close { pacer, how, timeout, fill, sent } => {
                for (_, scheduled) in pacer.take_due(now) {
                    let cmd = CloseCommand { how: *how, scheduled, timeout: *timeout, fill: *fill };
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

    fn spawn_connection(&mut self, attempt: Box<Attempt>, permits: &Arc<Semaphore>) {
        let (close_tx, close_rx) = oneshot::channel();
        if attempt.then_close.is_none() {
            self.held.push_back(close_tx);
        }
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
        phase: &PhasePlan,
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
            succeeded: driver.succeeded(collected),
            failed: collected.failures(),
            open: self.open,
            phase_elapsed: start.elapsed(),
            established,
            time_wait,
        });
    }

    /// A census now, with the phase's running counts.
    async fn sample(&mut self, succeeded: u64, failed: u64) -> CensusSample {
        let (pair, problem) = self.censuses.take().await;
        self.note_once(problem);
        CensusSample {
            t_ms: self.ms_since_start(),
            client: pair.client,
            server: pair.server,
            succeeded,
            failed,
            open: self.open,
        }
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
