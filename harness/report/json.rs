//! `--json FILE`: the report as JSON (schema `sockcap.report/1`), written atomically
//! (a temporary file in the same directory, then rename: [`super::write::atomically`]),
//! so a reader never sees half a file.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context};

use crate::report::{RunReport, SCHEMA};

/// Write `report` to `path` atomically.
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    super::write::atomically(path, |out| {
        serde_json::to_writer_pretty(&mut *out, report)?;
        out.write_all(b"\n")
    })?;
    Ok(())
}

/// A report from its JSON text (`origin` names it in messages), its schema checked
/// before its shape, so that an old or foreign file gets a message that says so.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<RunReport> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
        format!("{origin} is not JSON; give a report written by `sockcap run SCENARIO --json FILE`")
    })?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(anyhow!(
                "{origin} has schema `{other}`; this sockcap reads `{SCHEMA}`: write the reports with the same sockcap version"
            ))
        }
        None => {
            return Err(anyhow!(
                "{origin} has no `schema` field, so it is not a sockcap report; write one with `sockcap run SCENARIO --json FILE`"
            ))
        }
    }
    serde_json::from_value(value)
        .with_context(|| format!("{origin} does not match {SCHEMA} (see docs/report.schema.json)"))
}

/// Read a report back (for tests).
pub fn read(path: &Path) -> anyhow::Result<RunReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a sockcap report", path.display()))
}
