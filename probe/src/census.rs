//! Socket census: count TCP sockets by state, filtered by port and address.
//!
//! STUB: interface fixed, implementation pending (sock_diag + /proc fallback).

use std::net::IpAddr;

use crate::state::StateCounts;

/// Which sockets to count. Every `Some` field must match; the kernel does the
/// filtering where it can (a port in the request's socket id, or bytecode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub local_addr: Option<IpAddr>,
    pub remote_addr: Option<IpAddr>,
}

/// Where a census came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// NETLINK_SOCK_DIAG dumps (IPv4 and IPv6).
    SockDiag,
    /// /proc/net/tcp and /proc/net/tcp6, used when netlink is refused.
    ProcNet,
}

/// How many matching sockets one remote (or local) address holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerCount {
    pub addr: IpAddr,
    pub sockets: u64,
}

/// One census: counts by state, and optionally the addresses holding most sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    pub states: StateCounts,
    /// Top peers by socket count, largest first (empty unless asked for).
    pub peers: Vec<PeerCount>,
}

/// A reusable census taker: holds its netlink socket between censuses.
#[derive(Debug)]
pub struct Prober {
    backend: Backend,
    warning: Option<String>,
}

/// Why a census could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CensusError {
    #[error("reading {path}: {source}")]
    Proc { path: String, source: std::io::Error },
    #[error("sock_diag: {0}")]
    Netlink(std::io::Error),
    #[error("sock_diag reply could not be parsed: {0}")]
    Parse(String),
}

impl Prober {
    /// Open a sock_diag socket, or fall back to /proc/net/tcp{,6} with a warning
    /// (see [`Prober::warning`]) when netlink is refused.
    pub fn new() -> Prober {
        Prober { backend: Backend::ProcNet, warning: None }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why the fallback backend is in use, if it is.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Count matching sockets by state (IPv4 and IPv6).
    pub fn census(&mut self, _filter: &Filter) -> Result<StateCounts, CensusError> {
        Ok(StateCounts::default())
    }

    /// Count matching sockets by state, and the `top` addresses holding most of them:
    /// remote addresses when the filter names a local port, local addresses otherwise.
    pub fn census_with_peers(&mut self, filter: &Filter, _top: usize) -> Result<Census, CensusError> {
        Ok(Census { states: self.census(filter)?, peers: Vec::new() })
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}
