//! The engine's order to close a connection: a file of its own, since the worker's
//! bells (`worker/held.rs`) carry it to connections that hold a bell.

use std::time::Duration;

use tokio::time::Instant;

use crate::plan::CloseMode;

/// The engine's order to close, sent once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCommand {
    pub how: CloseMode,
    /// The close's scheduled instant: close latency is measured from here.
    pub scheduled: Instant,
    /// How long to wait for the target's FIN where the mode waits for one.
    pub timeout: Duration,
    /// Write until the send buffer is full first.
    pub fill: bool,
}
