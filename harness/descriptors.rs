//! Descriptor limits for a run: raise RLIMIT_NOFILE's soft limit to the hard limit,
//! and refuse a run that cannot fit before it opens a socket.

/// Descriptors kept free for the runtime, the census socket, files and the report.
pub const RESERVE: u64 = 100;

/// RLIMIT_NOFILE before and after raising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileRaise {
    pub soft_before: u64,
    pub soft_after: u64,
    pub hard: u64,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit. The probe reads the limit
/// ([`probe::limits::nofile`]); raising it is the harness's, with the same `rlimit` crate.
pub fn raise_nofile() -> std::io::Result<NofileRaise> {
    let (soft_before, hard) = probe::limits::nofile()?;
    if soft_before < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    let (soft_after, hard) = probe::limits::nofile()?;
    Ok(NofileRaise { soft_before, soft_after, hard })
}

/// Connections one process may hold under a descriptor limit: the limit minus [`RESERVE`].
pub fn per_process(nofile_limit: u64) -> u64 {
    nofile_limit.saturating_sub(RESERVE).max(1)
}

/// The most processes one side of a run spreads its connections over: client workers
/// (`--workers`) and the embedded target's (`embedded.workers`, `serve --workers`). At
/// 20,000 descriptors each, far more sockets than one machine's memory holds.
pub const MAX_WORKERS: u32 = 1024;

/// Processes needed to hold `connections` under a per-process descriptor limit.
pub fn workers_needed(connections: u64, nofile_limit: u64) -> u64 {
    connections.div_ceil(per_process(nofile_limit)).max(1)
}

/// The machine cannot run this scenario as it is set up.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(
        "the scenario holds up to {connections} connections and needs {needed} descriptors, \
         but this process may open at most {hard} (RLIMIT_NOFILE hard limit). \
         Fix: raise the hard limit (`ulimit -Hn {needed}` as root, or LimitNOFILE= for a service), \
         or lower the connect counts to at most {fits}"
    )]
    Descriptors { connections: u64, needed: u64, hard: u64, fits: u64 },
}

/// Check that `connections` held at once fit under the hard limit.
pub fn check_descriptors(connections: u64, limits: &NofileRaise) -> Result<u64, EnvError> {
    let needed = connections + RESERVE;
    if needed > limits.soft_after {
        return Err(EnvError::Descriptors {
            connections,
            needed,
            hard: limits.hard,
            fits: limits.soft_after.saturating_sub(RESERVE),
        });
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_connections_are_refused_with_the_numbers() {
        let limits = NofileRaise { soft_before: 1024, soft_after: 20_000, hard: 20_000 };
        assert_eq!(check_descriptors(5_000, &limits).unwrap(), 5_100);
        let err = check_descriptors(50_000, &limits).unwrap_err().to_string();
        assert!(err.contains("needs 50100 descriptors"), "{err}");
        assert!(err.contains("at most 19900"), "{err}");
        assert_eq!(workers_needed(19_900, 20_000), 1);
        assert_eq!(workers_needed(19_901, 20_000), 2);
        assert_eq!(workers_needed(100_000, 20_000), 6);
        assert_eq!(workers_needed(0, 20_000), 1);
    }
}
