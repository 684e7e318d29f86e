//! How a command fails: the exit codes sockcap documents, and an error carrying one.

/// Exit codes, as documented in the README.
pub mod exit {
    /// Every expectation held.
    pub const PASSED: u8 = 0;
    /// An expectation failed (or the target failed mid-run).
    pub const FAILED: u8 = 1;
    /// Bad scenario or arguments.
    pub const BAD_INPUT: u8 = 2;
    /// The environment cannot run it (limits, permissions).
    pub const ENVIRONMENT: u8 = 3;
    /// Interrupted (Ctrl-C); the partial report was still written.
    pub const INTERRUPTED: u8 = 130;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::BAD_INPUT, error: error.into() }
    }

    pub fn environment(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::ENVIRONMENT, error: error.into() }
    }

    pub fn failed(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::FAILED, error: error.into() }
    }
}
