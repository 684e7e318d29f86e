//! Argument values that several commands parse alike: process counts, `--workers`,
//! a watch interval.

use std::time::Duration;

use crate::descriptors::MAX_WORKERS;

/// How many worker processes a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// As many as needed to stay under the per-process descriptor limit.
    Auto,
    Count(u32),
}

impl Workers {
    /// The forced count, or `None` for auto.
    pub fn forced(self) -> Option<u64> {
        match self {
            Workers::Auto => None,
            Workers::Count(n) => Some(u64::from(n)),
        }
    }
}

/// `--workers`: "auto" or a number of processes.
pub fn parse_workers(text: &str) -> Result<Workers, String> {
    match text {
        "auto" => Ok(Workers::Auto),
        n => parse_process_count(n).map(Workers::Count).map_err(|e| format!("`{n}`: {e}, or \"auto\"")),
    }
}

/// `--watch`: an interval of at least 10 ms.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e}; write e.g. 1s or 500ms"))?;
    if d < Duration::from_millis(10) {
        return Err("the interval must be at least 10ms".into());
    }
    Ok(d)
}

/// A number of processes, 1 to [`MAX_WORKERS`].
pub fn parse_process_count(text: &str) -> Result<u32, String> {
    let max = MAX_WORKERS;
    match text.parse::<u32>() {
        Ok(0) => Err("at least one process must serve; use 1 (the default) to serve from this process alone".into()),
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("write a number of processes from 1 to {max}")),
    }
}
