//! `sockcap preflight SCENARIO`: the budget of a run before it runs. Gathers the
//! environment, judges every check ([`crate::preflight`]), prints a table (or `--json`)
//! naming the first bottleneck and its fix, and exits 0 when the run fits, 3 when a
//! check blocks on either side, 2 for a bad scenario or arguments.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::anyhow;
use serde::Serialize;

use super::console::Console;
use super::failure::{exit, Failure};
use super::values::Workers;
use crate::descriptors;
use crate::plan::{Plan, TargetSpec};
use crate::preflight::{self, count, Assessment, CheckName, Environment, Side, Verdict};
use crate::printable::printable;

#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Check against this target instead of the scenario's ("HOST:PORT" or "embedded").
    #[arg(long)]
    pub target: Option<String>,
    /// Client source addresses instead of the scenario's, comma-separated; IPv4 ranges
    /// allowed ("127.0.0.2-127.0.0.9,127.0.0.20").
    #[arg(long, value_name = "LIST")]
    pub sources: Option<String>,
    /// Client worker processes: "auto" (as many as the descriptor limit needs) or a number.
    #[arg(long, default_value = "auto", value_name = "auto|N", value_parser = super::values::parse_workers)]
    pub workers: Workers,
    /// Check one host's share of a sharded run (`run --shard I/N`), "auto" as `run` reads it.
    #[arg(long, value_name = "I/N|auto", value_parser = super::shard_args::parse_shard)]
    pub shard: Option<super::shard_args::ShardArg>,
    /// Print the assessment as JSON (schema sockcap.preflight/1) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The JSON document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    schema: &'static str,
    scenario: String,
    name: &'a str,
    /// `HOST:PORT`, or `embedded`.
    target: String,
    /// No check blocks (exit 0).
    fits: bool,
    /// The blocking check that gives at the fewest connections, on either side.
    first_bottleneck: Option<CheckName>,
    /// The first blocking client-side check: what makes `sockcap run` refuse to start.
    client_blocker: Option<CheckName>,
    #[serde(flatten)]
    assessment: &'a Assessment,
}

pub fn preflight(args: PreflightArgs) -> Result<u8, Failure> {
    let whole = super::setup::load_plan(&args.scenario, args.target.as_deref())?;
    let host = super::shard_args::host_shard(args.shard, |var| std::env::var(var).ok())
        .map_err(|m| Failure::bad_input(anyhow!(m)))?;
    let mut plan = whole.host_share(host);
    if let Some(list) = &args.sources {
        plan.set_sources(list).map_err(|m| Failure::bad_input(anyhow!("--sources: {m}")))?;
    }
    plan.check_sources_here(args.sources.is_some()).map_err(Failure::bad_input)?;
    let nofile = descriptors::raise_nofile()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("reading RLIMIT_NOFILE")))?;
    let target = match plan.target {
        TargetSpec::Embedded => None,
        TargetSpec::Addr(addr) => Some(addr),
    };
    let env = Environment::read(&plan, target, nofile, args.workers.forced());
    let assessment = preflight::assess(&plan, &env);
    if args.json {
        let document = Document {
            schema: "sockcap.preflight/1",
            scenario: plan.file.display().to_string(),
            name: &plan.name,
            target: target_text(&plan),
            fits: assessment.fits(),
            first_bottleneck: assessment.first_bottleneck().map(|c| c.name),
            client_blocker: assessment.client_blocker().map(|c| c.name),
            assessment: &assessment,
        };
        let text = serde_json::to_string_pretty(&document).map_err(Failure::failed)?;
        Console::stdout().print(&format!("{text}\n"))?;
    } else {
        Console::stdout().print(&render(&plan, &assessment))?;
    }
    Ok(if assessment.fits() { exit::PASSED } else { exit::ENVIRONMENT })
}

fn target_text(plan: &Plan) -> String {
    match plan.target {
        TargetSpec::Embedded => "embedded".into(),
        TargetSpec::Addr(addr) => addr.to_string(),
    }
}

/// Text width the summaries are wrapped to.
const WIDTH: usize = 110;
/// Indent of a check's summary and fix under its verdict.
const INDENT: usize = 10;

/// The human view: per check its verdict, name and side, the summary and fix under
/// them; then the first bottleneck and the verdict.
fn render(plan: &Plan, a: &Assessment) -> String {
    let mut out = String::new();
    let file = plan.file.display().to_string();
    let _ = writeln!(
        out,
        "sockcap preflight: {} ({}), target {}",
        printable(&file),
        printable(&plan.name),
        target_text(plan)
    );
    let _ = writeln!(
        out,
        "peak {} connections at once ({} held, churn left out): {} worker process{}{}\n",
        count(a.peak_connections),
        count(a.peak_held),
        a.workers,
        if a.workers == 1 { "" } else { "es" },
        match a.target_workers {
            0 => String::new(),
            n => format!(", {n} embedded target process{}", if n == 1 { "" } else { "es" }),
        }
    );
    for check in &a.checks {
        let side = match check.side {
            Side::Client => "client",
            Side::Target => "target",
        };
        let gives_at = check.gives_at.map_or(String::new(), |n| format!(", gives at {} connections", count(n)));
        let _ = writeln!(out, "{:<INDENT$}{} ({side}){gives_at}", check.verdict.as_str(), check.name.as_str());
        wrap(&mut out, &check.summary);
        if let Some(fix) = &check.fix {
            wrap(&mut out, &format!("fix: {fix}"));
        }
    }
    out.push('\n');
    match a.first_bottleneck() {
        Some(check) => {
            let side = match check.side {
                Side::Client => "this machine",
                Side::Target => "the target",
            };
            let at = check.gives_at.map_or(String::new(), |n| format!(" at {} connections", count(n)));
            let _ = writeln!(out, "first bottleneck: {} ({side}){at}", check.name.as_str());
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "fix: {fix}");
            }
            let run = match a.client_blocker() {
                Some(c) => format!("`sockcap run` refuses it ({})", c.name.as_str()),
                None => "`sockcap run` still runs it, to measure where the target gives".to_string(),
            };
            let _ = writeln!(out, "verdict: does not fit (exit 3); {run}");
        }
        None => {
            let warnings = a.checks.iter().filter(|c| c.verdict == Verdict::Warning).count();
            let note = match warnings {
                0 => String::new(),
                1 => ", 1 warning".to_string(),
                n => format!(", {n} warnings"),
            };
            let _ = writeln!(
                out,
                "verdict: fits with {} worker process{}{note}",
                a.workers,
                if a.workers == 1 { "" } else { "es" }
            );
        }
    }
    out
}

/// Append `text` indented by [`INDENT`], wrapped at [`WIDTH`] between words.
fn wrap(out: &mut String, text: &str) {
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.chars().count() > WIDTH - INDENT {
            out.push('\n');
            line = 0;
        }
        if line == 0 {
            out.push_str(&" ".repeat(INDENT));
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out.push('\n');
}
