//! [`DialError`]: a connection that could not be opened, with the step that failed.

use std::fmt;
use std::io;

/// The step of opening a connection that failed: the same errno means different things
/// at different steps (EADDRNOTAVAIL at bind: the source address is not this machine's;
/// at connect: no free port toward the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStep {
    /// Making the socket and setting its options.
    Socket,
    /// Binding the source address (and port).
    Bind,
    /// connect(), and the options set once connected.
    Connect,
}

/// A connection that could not be opened: the step and the error.
#[derive(Debug, thiserror::Error)]
pub struct DialError {
    pub step: DialStep,
    #[source]
    pub error: io::Error,
}

impl DialError {
    pub fn new(step: DialStep, error: io::Error) -> DialError {
        DialError { step, error }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            DialStep::Socket => "socket",
            DialStep::Bind => "bind",
            DialStep::Connect => "connect",
        };
        write!(f, "{step}: {}", self.error)
    }
}
