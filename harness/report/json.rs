//! `--json FILE`: the report as JSON (schema `sockcap.report/1`), written to what the
//! path names ([`super::write`]: a file atomically, so a reader never sees half of it;
//! a FIFO or a device in place), or to any writer (`--json -`: standard output).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{anyhow, Context};

use crate::report::{RunReport, SCHEMA};

/// Write `report` to `path` (see [`super::write::Destination`]).
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    super::write::to_path(path, |out| to_writer(report, out))?;
    Ok(())
}

/// Write `report` as pretty JSON and a newline to `out`.
pub fn to_writer(report: &RunReport, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    out.write_all(b"\n")
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
