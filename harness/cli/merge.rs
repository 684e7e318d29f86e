//! `sockcap merge --expect-shards N FILES...`: read the shards' reports (JSON files, or
//! logs holding framed reports from `--emit-report`), merge them exactly
//! ([`crate::report::merge::shards`]), print the text report, write the merged `--json`,
//! `--junit`, `--html`; exit 0 when the merged expectations hold, 1 when one fails, a
//! shard is missing or failed, 2 when the files cannot be merged.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::failure::{exit, Failure};
use crate::report::merge::shards::{self, ShardReport};
use crate::report::{self, frame};

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' reports: `sockcap run --shard I/N --json FILE` files, or logs holding
    /// `--emit-report` output (one or several shards' each, e.g. from `kubectl logs`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// How many shards the run had (its N): a missing one makes the report partial.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub expect_shards: u32,
    #[command(flatten)]
    pub outputs: super::outputs::ReportFiles,
}

pub fn merge(args: MergeArgs) -> Result<u8, Failure> {
    let inputs: Vec<(&str, &Path)> = args.files.iter().map(|f| ("a merge input", f.as_path())).collect();
    args.outputs.check(&inputs)?;
    let mut parts = Vec::new();
    for path in &args.files {
        parts.extend(read(path)?);
    }
    let merged = shards::shards(parts, args.expect_shards)
        .map_err(|e| Failure::bad_input(anyhow::Error::new(e).context("the reports cannot be merged")))?;
    let printed = args.outputs.text_console().print(&report::text::render(&merged));
    args.outputs.write(&merged)?;
    printed?;
    Ok(if merged.passed { exit::PASSED } else { exit::FAILED })
}

/// The reports in one file: a JSON report, or the framed reports in a log.
fn read(path: &Path) -> Result<Vec<ShardReport>, Failure> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}")).map_err(Failure::bad_input)?;
    if text.trim_start().starts_with('{') {
        let report = report::json::parse(&text, &name).map_err(Failure::bad_input)?;
        return Ok(vec![ShardReport { file: name, report }]);
    }
    let framed = frame::unframe_all(&text).map_err(|e| Failure::bad_input(anyhow!("{name}: {e}")))?;
    if framed.is_empty() {
        let why = format!(
            "{name} is neither a JSON report nor a log with a framed report; run the shards with --json FILE or --emit-report"
        );
        return Err(Failure::bad_input(anyhow!(why)));
    }
    let count = framed.len();
    framed
        .iter()
        .enumerate()
        .map(|(i, json)| {
            let origin = if count == 1 { name.clone() } else { format!("{name} (report {} of {count})", i + 1) };
            let text = String::from_utf8_lossy(json);
            report::json::parse(&text, &origin)
                .map(|report| ShardReport { file: origin.clone(), report })
                .map_err(Failure::bad_input)
        })
        .collect()
}
