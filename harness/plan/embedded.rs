//! The embedded target's options (`[embedded]`), checked: [`EmbeddedPlan`]. Plain data:
//! the CLI turns it into the embedded target's own options where it starts the target
//! (with the address it picked and the processes preflight asked for).

use std::time::Duration;

use super::error::{Check, PlanError};
use crate::descriptors::MAX_WORKERS;
use crate::protocol::OnEof;
use crate::scenario::EmbeddedSection;
use crate::socket::DEFAULT_BACKLOG;

/// How the embedded target treats connections, as the scenario asks; each default is
/// the polite behaviour. The embedded target's options document each in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedPlan {
    /// Listen backlog (accept queue length), clamped by the kernel to `net.core.somaxconn`.
    pub backlog: u32,
    /// What a connection does when the client's FIN arrives.
    pub on_eof: OnEof,
    /// Accept connections (false: the accept queue fills on purpose).
    pub accept: bool,
    /// TCP_DEFER_ACCEPT on the listener.
    pub defer_accept: Option<Duration>,
    /// Read from accepted connections (false: the client's data fills the window).
    pub read: bool,
    /// That long after accepting a connection, the target shuts down its write side.
    pub shutdown_after: Option<Duration>,
    /// Processes listening on the port together (at least 1; more when the peak needs them).
    pub workers: u32,
}

/// The `[embedded]` section, checked (`None`: the defaults).
pub(super) fn embedded_plan(check: &Check, e: Option<&EmbeddedSection>) -> Result<EmbeddedPlan, PlanError> {
    let on_eof = match e.and_then(|e| e.on_eof.as_deref()) {
        None | Some("close") => OnEof::Close,
        Some("hold") => OnEof::Hold,
        Some(other) => {
            return Err(check.err("embedded.on_eof", format!("`{other}` is not a choice; use \"close\" or \"hold\"")))
        }
    };
    let backlog = match e.and_then(|e| e.backlog) {
        None => DEFAULT_BACKLOG,
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
        Some(n) => return Err(check.err("embedded.backlog", format!("backlog must be 0 or more, found {n}"))),
    };
    let workers = match e.and_then(|e| e.workers) {
        None => 1,
        Some(n) if (1..=i64::from(MAX_WORKERS)).contains(&n) => n as u32,
        Some(n) => {
            let why = format!("the target runs in 1 to {MAX_WORKERS} processes, found {n}; write e.g. workers = 2");
            return Err(check.err("embedded.workers", why));
        }
    };
    let duration = |field: &str, value: Option<&String>| -> Result<Option<Duration>, PlanError> {
        value.map(|t| check.duration(&format!("embedded.{field}"), t)).transpose()
    };
    Ok(EmbeddedPlan {
        on_eof,
        backlog,
        accept: e.and_then(|e| e.accept).unwrap_or(true),
        defer_accept: duration("defer_accept", e.and_then(|e| e.defer_accept.as_ref()))?,
        read: e.and_then(|e| e.read).unwrap_or(true),
        shutdown_after: duration("shutdown_after", e.and_then(|e| e.shutdown_after.as_ref()))?,
        workers,
    })
}
