//! The report files a command writes besides the text on stdout (`--json`, `--junit`,
//! `--html`), shared by `run` and `merge`: their directories are checked before the
//! work, and every file is attempted even when one fails.

use std::path::{Path, PathBuf};

use super::failure::Failure;
use crate::report::{self, RunReport};

#[derive(Debug, clap::Args)]
pub struct ReportFiles {
    /// Also write the report as JSON (schema sockcap.report/1) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the expectations as JUnit XML (a test suite per phase) to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl ReportFiles {
    fn each(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [("--json", &self.json), ("--junit", &self.junit), ("--html", &self.html)]
            .into_iter()
            .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
    }

    /// The files' directories must exist before the work, not after it.
    pub fn check_dirs(&self) -> Result<(), Failure> {
        for (flag, path) in self.each() {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                let why = format!(
                    "{flag} {}: the directory {} does not exist; create it first",
                    path.display(),
                    dir.display()
                );
                return Err(Failure::bad_input(anyhow::anyhow!(why)));
            }
        }
        Ok(())
    }

    /// Write every file asked for; try each even when one fails (each is what was
    /// measured), then name those that could not be written (exit 3).
    pub fn write(&self, report: &RunReport) -> Result<(), Failure> {
        let unwritten: Vec<String> = self
            .each()
            .filter_map(|(flag, path)| {
                let written = match flag {
                    "--json" => report::json::write(report, path),
                    "--junit" => report::junit::write(report, path).map_err(anyhow::Error::new),
                    _ => report::html::write(report, path),
                };
                written.err().map(|e| format!("{flag}: {e:#}"))
            })
            .collect();
        if unwritten.is_empty() {
            Ok(())
        } else {
            Err(Failure::environment(anyhow::anyhow!("{}", unwritten.join("\n"))))
        }
    }
}
