//! `--json FILE`: the report as JSON (schema `sockcap.report/1`), written atomically
//! (a temporary file in the same directory, then rename), so a reader never sees half a file.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::report::RunReport;

/// Write `report` to `path` atomically.
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write_tmp = || -> anyhow::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut file, report)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(e) = write_tmp() {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Read a report back (for tests and, later, `compare` and `merge`).
pub fn read(path: &Path) -> anyhow::Result<RunReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a sockcap report", path.display()))
}
