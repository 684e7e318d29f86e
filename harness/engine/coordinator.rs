//! The coordinator: keeps the workers' phases in step (no worker starts phase k+1
//! before every worker finished phase k), takes the client- and server-side censuses
//! ([`super::census`]) and kernel counters for all of them, merges their live counts
//! into one progress line and their phase reports exactly into one
//! ([`crate::report::merge`]), and judges the expectations on the merged figures.
//!
//! Shutdown follows mini-redis: a [`CancellationToken`] ends the current phase early;
//! the workers are told to stop, report what they measured and close their
//! connections under a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use probe::{Prober, SockStat};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::census::Censuses;
use super::counters::PhaseCounters;
use super::events::{PhaseEvents, TargetRestarts};
use super::messages::{unix_us_now, Order, WorkerMsg, WorkerProgress};
use super::progress::{EndedPhase, Progress};
use super::spend::SpendMeter;
use super::worker_set::{Inbound, WorkerSet};
use crate::descriptors::NofileRaise;
use crate::plan::{PhasePlan, Plan};
use crate::rendezvous::RendezvousError;
use crate::report::unobserved;
use crate::report::{
    CensusPair, CensusSample, LimitsReport, Outcome, PhaseReport, RunReport, ScenarioInfo, ShardInfo, TargetFds,
    Unobserved, SCHEMA,
};
use crate::shard::Shard;
use crate::sources::Sources;

/// What the engine needs besides the plan: the resolved target and the environment.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The address to connect to (the embedded target's bound address when embedded).
    pub target: SocketAddr,
    pub embedded: bool,
    /// Where client connections bind.
    pub sources: Sources,
    pub nofile: NofileRaise,
    /// Descriptors each process needs at its peak (its connections plus a reserve).
    pub descriptors_needed: u64,
    /// Findings from before the run (the preflight's target-side verdicts).
    pub notes: Vec<String>,
    /// Which shard of a fleet this run is (`--shard`); its expectations are then
    /// deferred to the merged report.
    pub shard: Option<ShardInfo>,
    /// Where to ask for restarts of the embedded target (`fault = { restart_target }`).
    pub restarts: Option<TargetRestarts>,
}

/// When phase 1 starts, agreed with the other shards of a fleet.
pub enum StartGate {
    /// As soon as this host's workers are ready.
    Now,
    /// At this wall-clock instant, µs since the Unix epoch (`--start-at`).
    At(u64),
    /// When the rendezvous says (`--rendezvous`); awaited once the workers are ready.
    Rendezvous(Pin<Box<dyn Future<Output = Result<Instant, RendezvousError>> + Send>>),
}

impl std::fmt::Debug for StartGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartGate::Now => f.write_str("Now"),
            StartGate::At(us) => write!(f, "At({us})"),
            StartGate::Rendezvous(_) => f.write_str("Rendezvous"),
        }
    }
}

/// How often the progress channel is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Samples are at least this many census durations apart.
const CENSUS_SHARE: u32 = 5;
/// How far ahead of the order a phase starts, so every worker starts it together.
const START_AHEAD: Duration = Duration::from_millis(20);
/// How long workers get to close their connections and end after the last phase.
const END_DEADLINE: Duration = Duration::from_secs(20);

/// Run every phase of `plan` with `worker_set`, phase 1 at the start `gate` agrees; stops
/// early, with a partial report, when `shutdown` fires or a worker dies. Fails only
/// when the shards of a fleet found no common start (the workers are ended first).
pub async fn run(
    plan: &Plan,
    ctx: RunContext,
    worker_set: WorkerSet,
    gate: StartGate,
    shutdown: CancellationToken,
    progress: watch::Sender<Progress>,
) -> Result<RunReport, RendezvousError> {
    let started_at = SystemTime::now();
    let mut co = Coordinator::new(plan, &ctx, worker_set, progress);
    let mut phases = Vec::with_capacity(plan.phases.len());
    let mut gate = Some(gate);
    for (index, phase) in plan.phases.iter().enumerate() {
        if !co.all_ready(index, &shutdown).await {
            break;
        }
        let common_start = match gate.take() {
            None | Some(StartGate::Now) => None,
            Some(StartGate::At(unix_us)) => Some(super::messages::instant_of_unix_us(unix_us)),
            Some(StartGate::Rendezvous(agreed)) => tokio::select! {
                _ = shutdown.cancelled() => break,
                agreed = agreed => match agreed {
                    Ok(start) => Some(start),
                    Err(e) => {
                        co.finish().await;
                        return Err(e);
                    }
                },
            },
        };
        let report = co.run_phase(index, phase, common_start, &shutdown).await;
        let ended = Arc::new(EndedPhase::of(&report));
        co.progress.send_modify(|p| p.finished.push(ended));
        phases.push(report);
        give_back_free_heap();
        if shutdown.is_cancelled() || co.failure {
            break;
        }
    }
    co.finish().await;
    let outcome = match (co.failure, shutdown.is_cancelled()) {
        (true, _) => Outcome::Failed,
        (false, true) => Outcome::Interrupted,
        (false, false) => Outcome::Completed,
    };
    let (probe_backend, probe_warning) = co.censuses.backend();
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
            mqtt_version: (plan.protocol == crate::protocol::Protocol::Mqtt).then(|| plan.mqtt.version()),
            sources: ctx.sources.addrs.iter().map(ToString::to_string).collect(),
            netns: plan.netns.is_some(),
            workers: co.worker_set.len() as u32,
            transport: plan.transport.transport.as_str().to_string(),
            tls_insecure: plan.transport.insecure(),
        },
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        duration_ms: co.run_start.elapsed().as_millis() as u64,
        limits: LimitsReport {
            nofile_soft_before: ctx.nofile.soft_before,
            nofile_soft_after: ctx.nofile.soft_after,
            nofile_hard: ctx.nofile.hard,
            descriptors_needed: ctx.descriptors_needed,
            in_force: probe::Limits::read(),
        },
        probe_backend,
        probe_warning,
        notes: co.notes,
        phases,
        shard: ctx.shard.map(|shard| ShardInfo { start_unix_us: co.first_start_unix_us, ..shard }),
        merge: None,
        invalid: None,
        verdict: String::new(),
    };
    report.invalid =
        report.phases.iter().find_map(|p| p.invalid.as_ref().map(|why| format!("{why} (phase `{}`)", p.name)));
    report.passed = outcome == Outcome::Completed
        && report.failures().next().is_none()
        && report.failed_events().next().is_none()
        && report.invalid.is_none();
    report.verdict = report.verdict_key();
    report.notes.extend(crate::report::findings(&report));
    Ok(report)
}

/// What the coordinator knows of one worker.
#[derive(Debug, Default)]
struct WorkerState {
    /// The phase it waits to start.
    ready: Option<usize>,
    /// Its report of the phase in progress.
    report: Option<PhaseReport>,
    latest: WorkerProgress,
    gone: bool,
}

/// The state of a run between phases.
struct Coordinator<'p> {
    plan: &'p Plan,
    worker_set: WorkerSet,
    workers: Vec<WorkerState>,
    censuses: Censuses,
    run_start: Instant,
    progress: watch::Sender<Progress>,
    notes: Vec<String>,
    /// The phase in progress (for messages).
    phase_name: String,
    /// A worker died: the run ends after the current phase.
    failure: bool,
    /// Stop was ordered.
    stopping: bool,
    /// The processes holding the target's listening sockets, or why there are none to read.
    target_pids: Result<Vec<u32>, String>,
    /// Ports sockcap may take toward the target (sources × the ephemeral range).
    port_budget: u64,
    /// This host's shard of a fleet: its expectations are deferred to the merged report.
    shard: Option<Shard>,
    /// When phase 1 started, µs since the Unix epoch.
    first_start_unix_us: u64,
    /// The target's address, and where to ask for its restarts.
    target: SocketAddr,
    restarts: Option<TargetRestarts>,
}

impl<'p> Coordinator<'p> {
    fn new(
        plan: &'p Plan,
        ctx: &RunContext,
        worker_set: WorkerSet,
        progress: watch::Sender<Progress>,
    ) -> Coordinator<'p> {
        let prober = Prober::new();
        let mut notes = ctx.notes.clone();
        if let Some(warning) = prober.warning() {
            notes.push(warning.to_string());
        }
        let workers = (0..worker_set.len()).map(|_| WorkerState::default()).collect();
        Coordinator {
            plan,
            worker_set,
            workers,
            censuses: Censuses::new(prober, ctx.target),
            run_start: Instant::now(),
            progress,
            notes,
            phase_name: String::new(),
            failure: false,
            stopping: false,
            target_pids: super::spend::target_pids(ctx.target),
            port_budget: ctx.sources.capacity(),
            shard: ctx.shard.as_ref().map(|s| Shard { index: s.index, count: s.count }),
            first_start_unix_us: 0,
            target: ctx.target,
            restarts: ctx.restarts.clone(),
        }
    }

    /// Fold in one message; a worker that ended badly makes the run stop.
    fn handle(&mut self, i: usize, inbound: Inbound) {
        let worker = &mut self.workers[i];
        match inbound {
            Inbound::Msg(WorkerMsg::Ready { phase }) => worker.ready = Some(phase),
            Inbound::Msg(WorkerMsg::Progress(p)) => worker.latest = p,
            Inbound::Msg(WorkerMsg::Phase { report, .. }) => worker.report = Some(*report),
            Inbound::Msg(WorkerMsg::Done { notes }) => {
                let prefix =
                    if self.worker_set.len() > 1 { format!("{}: ", self.worker_set.name(i)) } else { String::new() };
                self.notes.extend(notes.into_iter().map(|n| format!("{prefix}{n}")));
            }
            Inbound::Ended { failure } => {
                worker.gone = true;
                if let Some(why) = failure {
                    let during = if self.phase_name.is_empty() {
                        "before the first phase".to_string()
                    } else {
                        format!("during phase `{}`", self.phase_name)
                    };
                    self.notes.push(format!(
                        "{} {why} {during}; the report holds what the run measured until then",
                        self.worker_set.name(i)
                    ));
                    self.failure = true;
                    self.stop();
                }
            }
        }
    }

    fn stop(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.worker_set.broadcast(Order::Stop);
        }
    }

    /// Wait until every worker waits to start phase `index`; false when the run ends.
    async fn all_ready(&mut self, index: usize, shutdown: &CancellationToken) -> bool {
        loop {
            if self.failure || shutdown.is_cancelled() {
                return false;
            }
            if self.workers.iter().all(|w| w.ready == Some(index)) {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                inbound = self.worker_set.recv() => match inbound {
                    Some((i, inbound)) => self.handle(i, inbound),
                    None => return false,
                },
            }
        }
    }

    /// Run phase `index`: at `common_start` when given (the fleet's start of phase 1),
    /// else a moment after its opening census.
    async fn run_phase(
        &mut self,
        index: usize,
        phase: &PhasePlan,
        common_start: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> PhaseReport {
        self.phase_name.clone_from(&phase.name);
        for sysctl in &phase.sysctls {
            if let Err(e) = crate::netns::write_sysctl(sysctl) {
                self.notes.push(format!("phase `{}`: {e}", phase.name));
            }
        }
        for worker in &mut self.workers {
            worker.report = None;
            worker.latest = WorkerProgress { phase: index, open: worker.latest.open, ..Default::default() };
        }
        // The census as the phase begins, taken before its clock starts so that pacing
        // does not absorb the census's time.
        let first = self.sample().await;
        let mut last_census = first.as_ref().map(CensusSample::pair);
        let mut samples: Vec<CensusSample> = first.into_iter().collect();
        let counters = PhaseCounters::start();
        let mut sockcap_pids = vec![std::process::id()];
        sockcap_pids.extend_from_slice(self.worker_set.pids());
        let meter = SpendMeter::start(self.target_pids.as_deref().map_err(Clone::clone), &sockcap_pids);
        let earliest = Instant::now() + START_AHEAD;
        let late = common_start.and_then(|c| earliest.checked_duration_since(c)).filter(|l| *l > START_AHEAD);
        if let Some(late) = late {
            self.notes.push(format!(
                "phase `{}` started {} ms after the fleet's common start: this host was not ready in time",
                phase.name,
                late.as_millis()
            ));
        }
        let start = common_start.map_or(earliest, |c| c.max(earliest));
        let at = unix_us_now() + start.saturating_duration_since(Instant::now()).as_micros() as u64;
        if index == 0 {
            self.first_start_unix_us = at;
        }
        self.worker_set.broadcast(Order::Start { phase: index, at_unix_us: at });
        let stop = shutdown.child_token();
        let mut events = PhaseEvents::start(&phase.events, start, self.run_start, self.restarts.clone(), stop);
        let every = self.plan.sample_every;
        let mut next_sample = start + every;
        let mut ticker = interval_at(start, PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while !(self.workers.iter().all(|w| w.gone || w.report.is_some()) && events.done()) {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !self.stopping => self.stop(),
                () = events.wait(), if !events.done() => {}
                inbound = self.worker_set.recv() => match inbound {
                    Some((i, inbound)) => self.handle(i, inbound),
                    None => break,
                },
                _ = sleep_until(next_sample) => {
                    let began = Instant::now();
                    if let Some(sample) = self.sample().await {
                        last_census = Some(sample.pair());
                        samples.push(sample);
                    }
                    // A census of a million sockets takes about a second of both cores:
                    // keep the census under a fifth of the time, whatever `sample_every`.
                    next_sample = began + every.max(began.elapsed() * CENSUS_SHARE);
                }
                _ = ticker.tick() => self.publish(index, phase, start, last_census.clone()),
            }
        }
        let events = events.finish().await;
        if phase.events.iter().any(|e| matches!(e, crate::plan::Event::RestartTarget(_))) {
            // The target's descriptor figures follow its new processes.
            self.target_pids = super::spend::target_pids(self.target);
        }
        // What this coordinator could not observe itself: a census side, the counters.
        let (census, mut observed_here) = self.censuses.take().await;
        let kernel = counters.end(&phase.expect, &mut observed_here);
        self.note_unobserved(&observed_here);
        let observed = observed_here.get(unobserved::CENSUS_CLIENT).is_none().then(|| CensusPair {
            client: census.client,
            server: census.server.filter(|_| observed_here.get(unobserved::CENSUS_SERVER).is_none()),
        });
        self.publish(index, phase, start, observed);
        let reported: Vec<usize> = (0..self.workers.len()).filter(|i| self.workers[*i].report.is_some()).collect();
        let parts: Vec<PhaseReport> = self.workers.iter_mut().filter_map(|w| w.report.take()).collect();
        let mut report = if parts.is_empty() {
            self.empty_phase(phase)
        } else {
            let merged = crate::report::merge::phases(&parts, "worker");
            self.notes.extend(merged.notes);
            merged.report
        };
        if parts.len() < self.workers.len() {
            let silent: Vec<&str> =
                (0..self.workers.len()).filter(|i| !reported.contains(i)).map(|i| self.worker_set.name(i)).collect();
            report.unobserved.mark(
                unobserved::OPERATIONS,
                format!("{} sent no report of this phase: its counts are missing", silent.join(", ")),
            );
            self.notes.push(format!(
                "phase `{}`: {} of {} workers reported it; its figures are theirs",
                phase.name,
                parts.len(),
                self.workers.len()
            ));
        }
        report.started_ms = start.saturating_duration_since(self.run_start).as_millis() as u64;
        // The workers count the last return from the phase's start; the report from the run's.
        if let Some(back) = report.recovery.as_mut().and_then(|r| r.last_back_ms.as_mut()) {
            *back = back.saturating_add(report.started_ms);
        }
        report.duration_ms = start.elapsed().as_millis() as u64;
        report.census = census;
        report.unobserved.extend(&observed_here, "");
        report.samples = samples;
        report.kernel = kernel;
        report.sockstat = SockStat::read().unwrap_or_else(|e| {
            report.unobserved.mark(unobserved::SOCKSTAT, format!("/proc/net/sockstat could not be read: {e}"));
            SockStat::default()
        });
        report.target_fds = self.target_fds();
        (report.kind, report.events) = (phase.kind().to_string(), events);
        super::spend::measure(&mut report, &meter, &self.censuses, self.port_budget, &self.plan.validity).await;
        report.expectations = phase.expect.iter().map(|e| e.judge(&report)).collect();
        if self.shard.is_some() {
            report.expectations.iter_mut().for_each(|e| e.deferred = true);
        }
        report
    }

    /// The descriptors the target's processes hold now (those found at the start of the
    /// run; any that ended since are left out).
    fn target_fds(&self) -> Option<TargetFds> {
        let pids = self.target_pids.as_deref().unwrap_or_default();
        let read: Vec<probe::ProcessFds> = pids.iter().filter_map(|pid| probe::ProcessFds::read(*pid).ok()).collect();
        (!read.is_empty()).then(|| TargetFds {
            processes: read.len() as u32,
            open: read.iter().map(|p| p.open).sum(),
            limit: read.iter().map(|p| p.limit_soft).fold(0, u64::saturating_add),
        })
    }

    /// A phase that no worker reported (every worker died in it).
    fn empty_phase(&self, phase: &PhasePlan) -> PhaseReport {
        PhaseReport::empty(&phase.name, phase.kind())
    }

    /// The workers' counts of the phase in progress, summed.
    fn counts(&self) -> WorkerProgress {
        let mut sum = WorkerProgress::default();
        for worker in &self.workers {
            sum.add(&worker.latest);
        }
        sum
    }

    fn publish(&self, index: usize, phase: &PhasePlan, start: Instant, census: Option<CensusPair>) {
        let mut counts = self.counts();
        // What the plan schedules on this host, whether or not every worker has sent its
        // first counts (the sum of those that have would be a part: "0/16666" of 100,000);
        // a close phase's count depends on what each worker holds, so it is their sum.
        if let Some(n) = phase.action.scheduled() {
            counts.planned = self.shard.unwrap_or(Shard::ALL).share(n);
        }
        self.progress.send_modify(|p| {
            let finished = std::mem::take(&mut p.finished);
            *p = Progress {
                phase_index: index,
                phase_count: self.plan.phases.len(),
                phase_name: phase.name.clone(),
                kind: phase.kind(),
                planned: counts.planned,
                attempted: counts.attempted,
                succeeded: counts.succeeded,
                failed: counts.failed,
                open: counts.open,
                phase_elapsed: start.elapsed(),
                established: census.as_ref().map(|c| c.client.get(probe::TcpState::Established)),
                time_wait: census.as_ref().map(|c| c.client.get(probe::TcpState::TimeWait)),
                workers: self.workers.len(),
                errors: counts.errors,
                drops: counts.drops,
                reconnected: counts.reconnected,
                census,
                finished,
            }
        });
    }

    /// A census now, with the phase's running counts as the census starts; none when a
    /// side's census failed (a sample of zeros would be no reading).
    async fn sample(&mut self) -> Option<CensusSample> {
        // The freshest counts: fold in what the workers already sent.
        while let Some((i, inbound)) = self.worker_set.try_recv() {
            self.handle(i, inbound);
        }
        let counts = self.counts();
        let t_ms = self.run_start.elapsed().as_millis() as u64;
        let (pair, unobserved) = self.censuses.take().await;
        self.note_unobserved(&unobserved);
        unobserved.is_empty().then_some(CensusSample {
            t_ms,
            client: pair.client,
            server: pair.server,
            succeeded: counts.succeeded,
            failed: counts.failed,
            open: counts.open,
        })
    }

    fn note_unobserved(&mut self, unobserved: &Unobserved) {
        for (_, reason) in unobserved.iter() {
            self.note_once(Some(reason.to_string()));
        }
    }

    fn note_once(&mut self, problem: Option<String>) {
        if let Some(problem) = problem {
            if !self.notes.contains(&problem) {
                self.notes.push(problem);
            }
        }
    }

    /// Tell every worker to stop and wait, under a deadline, until each has closed its
    /// connections and ended.
    async fn finish(&mut self) {
        self.stop();
        self.worker_set.broadcast(Order::Finish);
        // Nothing more to order: a worker process sees its stdin end.
        self.worker_set.hang_up();
        let all_gone = async {
            while !self.workers.iter().all(|w| w.gone) {
                match self.worker_set.recv().await {
                    Some((i, inbound)) => self.handle(i, inbound),
                    None => break,
                }
            }
        };
        if tokio::time::timeout(END_DEADLINE, all_gone).await.is_err() {
            let left: Vec<&str> =
                (0..self.workers.len()).filter(|i| !self.workers[*i].gone).map(|i| self.worker_set.name(i)).collect();
            self.notes.push(format!(
                "{} did not end within {}s and were killed",
                left.join(", "),
                END_DEADLINE.as_secs()
            ));
        }
        self.worker_set.hang_up();
    }
}

/// Hand the heap's free pages back to the kernel at a phase's end: a phase's merge
/// frees its histograms and samples, and without this the allocator keeps them, so the
/// coordinator's RSS stepped at every phase boundary of a long run (bench/soak.sh).
fn give_back_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel (under malloc's own lock).
    unsafe {
        libc::malloc_trim(0);
    }
}
