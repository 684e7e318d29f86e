//! [`CensusError`]: why a census could not be taken.

/// Why a census could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CensusError {
    /// A /proc/net file could not be read.
    #[error("reading {path}: {source}")]
    Proc {
        /// The file.
        path: String,
        /// What reading it said.
        source: std::io::Error,
    },
    /// The sock_diag socket or the kernel reported an error other than a refusal
    /// (refusals switch the prober to /proc instead).
    #[error("sock_diag: {0}")]
    Netlink(std::io::Error),
    /// A sock_diag reply or a /proc/net line did not have the expected shape.
    #[error("census reply could not be parsed: {0}")]
    Parse(String),
}
