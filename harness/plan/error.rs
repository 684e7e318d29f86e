//! A scenario that cannot run: [`PlanError`] names the file, the field and the fix; the
//! CLI turns it into exit code 2. [`Check`] builds them for one file and checks the
//! values every section has (durations, rates, how long a phase takes).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::printable::printable;

/// A scenario that cannot run, with where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub struct PlanError {
    pub file: PathBuf,
    /// The field at fault (`phase[2].connect.rate`), or empty for file-level errors.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message quotes the scenario's own values (names, addresses): escaped, so
        // a control character in them cannot act on the terminal.
        let (file, message) = (self.file.display().to_string(), printable(&self.message));
        if self.field.is_empty() {
            write!(f, "{}: {message}", printable(&file))
        } else {
            write!(f, "{}: field `{}`: {message}", printable(&file), printable(&self.field))
        }
    }
}

/// The longest duration a phase may take.
const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rates accepted, per second.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 10_000_000.0;

/// Builds errors for one file.
pub(super) struct Check<'a> {
    pub(super) file: &'a Path,
}

impl Check<'_> {
    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError { file: self.file.to_path_buf(), field: field.into(), message: message.into() }
    }

    pub(super) fn duration(&self, field: &str, text: &str) -> Result<Duration, PlanError> {
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(field, format!("`{text}` is not a duration ({e}); write e.g. \"30s\", \"500ms\" or \"2m\""))
        })?;
        if d > MAX_SPAN {
            return Err(self.err(field, format!("`{text}` is longer than the longest phase sockcap runs (7 days)")));
        }
        Ok(d)
    }

    pub(super) fn rate(&self, field: &str, rate: f64) -> Result<f64, PlanError> {
        if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
            Ok(rate)
        } else {
            Err(self
                .err(field, format!("rate must be a number per second from {MIN_RATE} to {MAX_RATE}, found {rate:?}")))
        }
    }

    /// `count` operations at `rate` must fit in the longest phase.
    pub(super) fn span(&self, field: &str, count: u64, rate: f64) -> Result<(), PlanError> {
        if count as f64 / rate > MAX_SPAN.as_secs_f64() {
            return Err(self.err(field, format!("{count} at {rate}/s takes longer than 7 days; raise the rate")));
        }
        Ok(())
    }
}
