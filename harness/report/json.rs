//! `--json FILE`: the report as JSON (schema `sockcap.report/1`), written atomically
//! (a temporary file in the same directory, then rename: [`super::write::atomically`]),
//! so a reader never sees half a file.

use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::report::RunReport;

/// Write `report` to `path` atomically.
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    super::write::atomically(path, |out| {
        serde_json::to_writer_pretty(&mut *out, report)?;
        out.write_all(b"\n")
    })?;
    Ok(())
}

/// Read a report back (for tests and, later, `compare` and `merge`).
pub fn read(path: &Path) -> anyhow::Result<RunReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a sockcap report", path.display()))
}
