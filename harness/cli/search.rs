//! `sockcap search SCENARIO`: step the scenario's `[search]` level (connect rate or
//! connections held) and bisect to the target's limit against the objectives. Each
//! step is a generated scenario file run through the engine as `sockcap run` runs one
//! (preflight budget, worker processes when the descriptors need them); an embedded
//! target is started once for the whole search. Each step prints a line as it ends; the
//! verdict last. Ctrl-C ends the search after the step in progress drains, and the
//! report holds the steps so far (exit 130).
//!
//! Exit: 0 a limit was found or the range held to its top, 1 the first step already
//! breached (or the limit is unknown: sockcap's own limit came first), 2 bad input,
//! 3 environment, 130 interrupted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::console::Console;
use super::failure::{exit, Failure};
use crate::descriptors::{self, NofileRaise};
use crate::embedded::EmbeddedTarget;
use crate::engine::worker::WorkerContext;
use crate::engine::worker_set::{self, WorkerSet};
use crate::engine::{self, RunContext, StartGate};
use crate::plan::{Plan, TargetSpec};
use crate::preflight;
use crate::report::write;
use crate::search::judge::{judge, Judged};
use crate::search::{html, Conclusion, Next, SearchReport, SearchSpec, StepReport, StepVerdict};
use crate::shard::Shard;

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The scenario file (TOML) with a `[search]` table.
    pub scenario: PathBuf,
    /// Connect here instead of the scenario's `target` ("HOST:PORT" or "embedded").
    #[arg(long)]
    pub target: Option<String>,
    /// Write the search's report as JSON (schema sockcap.search/1) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the search as an HTML page with the knee chart to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Worker processes holding each step's connections: "auto" or a number.
    #[arg(long, default_value = "auto", value_parser = super::values::parse_workers)]
    pub workers: super::values::Workers,
}

fn bad(file: &Path, why: impl std::fmt::Display) -> Failure {
    Failure::bad_input(anyhow!("{}: {why}", file.display()))
}

/// The `[search]` table and the scenario as written, checked.
fn read_spec(file: &Path) -> Result<(SearchSpec, toml::Table), Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| bad(file, format!("cannot read it: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| bad(file, e))?;
    let scenario: crate::scenario::Scenario = toml::from_str(&text).map_err(|e| bad(file, e))?;
    let section = scenario.search.ok_or_else(|| {
        bad(file, "no [search] table: add one, e.g. [search] mode = \"rate\", from = 500, to = 5000, step = 500, objectives = { handshake_p99 = \"< 100ms\" }")
    })?;
    if !scenario.phases.is_empty() {
        return Err(bad(file, "[[phase]]: a search generates each step's phases; remove the [[phase]] tables"));
    }
    let spec = SearchSpec::from_section(&section).map_err(|m| bad(file, m))?;
    Ok((spec, table))
}

/// Where the steps' scenario files are written, removed when the search ends.
struct StepDir(PathBuf);

impl Drop for StepDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StepDir {
    fn write(&self, index: usize, text: &str) -> Result<PathBuf, Failure> {
        let path = self.0.join(format!("step-{index}.toml"));
        std::fs::write(&path, text)
            .map_err(|e| Failure::environment(anyhow!("writing the step's scenario {}: {e}", path.display())))?;
        Ok(path)
    }
}

pub fn search(args: SearchArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    let (spec, table) = read_spec(&args.scenario)?;
    for out in [&args.json, &args.html].into_iter().flatten() {
        if out == &args.scenario {
            return Err(bad(out, "an output names the scenario file: give the report another path"));
        }
    }
    let dir = std::env::temp_dir().join(format!("sockcap-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::environment(anyhow!("creating {} for the steps' scenarios: {e}", dir.display())))?;
    let dir = StepDir(dir);
    // The top step's plan: the whole scenario checked before anything runs (exit 2), and
    // the embedded target sized for the largest step.
    let top = dir.write(0, &spec.step_scenario(&table, spec.schedule.to))?;
    let top_plan = super::setup::load_plan(&top, args.target.as_deref())?;
    let nofile = descriptors::raise_nofile()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("reading RLIMIT_NOFILE")))?;
    let host = Shard::ALL;
    let rt = super::setup::runtime()?;
    let name = table.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
    let mut report = SearchReport {
        schema: "sockcap.search/1".into(),
        scenario: name,
        mode: spec.mode.key().into(),
        unit: spec.mode.unit().into(),
        objectives: objectives(&spec),
        steps: Vec::new(),
        verdict: None,
        duration_ms: 0,
    };
    let mut console = Console::stdout();
    let conclusion = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = super::interrupt::watch(shutdown.clone()).ok();
        let embedded = match top_plan.target {
            TargetSpec::Embedded => {
                let env = preflight::Environment::read(&top_plan, None, nofile, args.workers.forced());
                let workers = preflight::assess(&top_plan, &env).target_workers;
                let workers = u32::try_from(workers).unwrap_or(crate::embedded::MAX_WORKERS);
                Some(super::run::start_embedded(&top_plan, workers).await?.0)
            }
            TargetSpec::Addr(_) => None,
        };
        let mut verdicts: Vec<(f64, StepVerdict)> = Vec::new();
        let conclusion = loop {
            let level = match spec.schedule.next(&verdicts) {
                Next::Done(c) => break Ok(c),
                Next::Try(level) => level,
            };
            if shutdown.is_cancelled() {
                verdicts.push((level, StepVerdict::Interrupted));
                continue;
            }
            let index = verdicts.len() + 1;
            let file = dir.write(index, &spec.step_scenario(&table, level))?;
            let plan = super::setup::load_plan(&file, args.target.as_deref())?;
            let step_started = Instant::now();
            let judged = match step(&plan, &file, embedded.as_ref(), nofile, host, &args, shutdown.clone()).await? {
                Ok(run) => judge(&run),
                // This machine cannot run the step (the preflight's budget): sockcap's limit.
                Err(why) => Judged {
                    verdict: StepVerdict::Unknown(format!("sockcap cannot run this step here: {why}")),
                    objectives: Vec::new(),
                    figures: Default::default(),
                    invalid: None,
                },
            };
            let (verdict, why) = match &judged.verdict {
                StepVerdict::Holds => ("holds", None),
                StepVerdict::Breaks => ("breaks", None),
                StepVerdict::Unknown(why) => ("unknown", Some(why.clone())),
                StepVerdict::Interrupted => ("interrupted", None),
            };
            let step = StepReport {
                index: index as u32,
                level,
                verdict: verdict.into(),
                why,
                invalid: judged.invalid,
                figures: judged.figures,
                objectives: judged.objectives,
                duration_ms: step_started.elapsed().as_millis() as u64,
            };
            let _ = console.print(&format!("{}\n", step.line(spec.mode)));
            report.steps.push(step);
            verdicts.push((level, judged.verdict));
        };
        if let Some(signals) = signals {
            signals.abort();
        }
        if let Some(embedded) = embedded {
            if let Err(e) = embedded.stop().await {
                crate::stderr::line(format_args!("sockcap: stopping the embedded target: {e:#}"));
            }
        }
        conclusion
    });
    // A blocking task left behind (seen once: the process lingered ~200 s after its
    // verdict) does not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let conclusion = conclusion?;
    let verdict = crate::search::report::verdict(&conclusion, &report.steps, spec.mode, &report.objectives);
    let _ = console.print(&format!("{}\n", verdict.text));
    report.verdict = Some(verdict);
    report.duration_ms = started.elapsed().as_millis() as u64;
    write_outputs(&args, &report)?;
    Ok(match conclusion {
        Conclusion::Limit { .. } | Conclusion::HoldsToTop { .. } => exit::PASSED,
        Conclusion::Stopped { ref why, .. } if why == "interrupted" => exit::INTERRUPTED,
        Conclusion::Stopped { .. } => exit::PASSED,
        Conclusion::BreaksAtFirst { .. } | Conclusion::Unknown { .. } => exit::FAILED,
    })
}

fn objectives(spec: &SearchSpec) -> Vec<String> {
    spec.objectives
        .iter()
        .filter_map(|(name, value)| crate::expect::Expectation::parse(name, value).ok().map(|e| e.expr))
        .collect()
}

fn write_outputs(args: &SearchArgs, report: &SearchReport) -> Result<(), Failure> {
    let mut unwritten = Vec::new();
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(report).unwrap_or_default();
        if let Err(e) = write::to_path(path, |w| w.write_all(&json).and_then(|_| w.write_all(b"\n"))) {
            unwritten.push(format!("--json {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.html {
        let page = html::render(report);
        if let Err(e) = write::to_path(path, |w| w.write_all(page.as_bytes())) {
            unwritten.push(format!("--html {}: {e}", path.display()));
        }
    }
    if unwritten.is_empty() {
        Ok(())
    } else {
        Err(Failure::environment(anyhow!("{}", unwritten.join("; "))))
    }
}

/// One step's run: its plan through the engine, toward the embedded target already
/// started or the scenario's address; or why this machine cannot run it (the
/// preflight's client-side blocker: descriptors, ports, memory).
async fn step(
    plan: &Plan,
    file: &Path,
    embedded: Option<&EmbeddedTarget>,
    nofile: NofileRaise,
    host: Shard,
    args: &SearchArgs,
    shutdown: CancellationToken,
) -> Result<Result<crate::report::RunReport, String>, Failure> {
    // TLS toward the embedded target trusts the certificate it made (as `sockcap run`).
    let tls_ca = embedded.and_then(|e| e.tls_ca.clone());
    let mut trusting = None;
    if let Some(ca) = &tls_ca {
        let mut p = plan.clone();
        p.transport.trust_embedded_ca(ca).map_err(Failure::bad_input)?;
        trusting = Some(p);
    }
    let plan = trusting.as_ref().unwrap_or(plan);
    let target = match (embedded, plan.target) {
        (Some(e), _) => e.addr,
        (None, TargetSpec::Addr(addr)) => addr,
        (None, TargetSpec::Embedded) => {
            return Err(Failure::environment(anyhow!("the embedded target is not running")))
        }
    };
    let nominal = embedded.is_none().then_some(target);
    let env = preflight::Environment::read(plan, nominal, nofile, args.workers.forced());
    let budget = preflight::assess(plan, &env);
    if let Some(blocker) = budget.client_blocker() {
        let fix = blocker.fix.as_deref().map(|f| format!("\nFix: {f}")).unwrap_or_default();
        return Ok(Err(format!("{}: {}{fix}", blocker.name.as_str(), blocker.summary)));
    }
    let workers = budget.workers;
    let sources = env.sources;
    let sha256 = super::shard_args::scenario_sha256(file)?;
    let clients = if workers == 1 {
        let ctx = WorkerContext { target, sources: sources.clone(), shard: host, hosts: host.count };
        WorkerSet::in_process(Arc::new(plan.clone()), ctx)
    } else {
        let scenario = worker_set::Scenario {
            path: file,
            sha256: &sha256,
            embedded: embedded.is_some(),
            tls_ca: tls_ca.as_deref(),
        };
        WorkerSet::processes(&scenario, target, &sources, host, workers as u32).map_err(Failure::environment)?
    };
    let ctx = RunContext {
        restarts: None,
        target,
        embedded: embedded.is_some(),
        sources,
        nofile,
        descriptors_needed: budget.peak_connections.div_ceil(workers) + descriptors::RESERVE,
        notes: Vec::new(),
        shard: None,
    };
    let (progress, _) = watch::channel(engine::Progress::default());
    engine::run(plan, ctx, clients, StartGate::Now, shutdown, progress)
        .await
        .map(Ok)
        .map_err(|e| Failure::environment(anyhow!("{e}")))
}
