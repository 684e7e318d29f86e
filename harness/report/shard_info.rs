//! What a shard's report says of the shard: its place in the fleet, how it started
//! and which sockets its census counted.

use std::net::SocketAddr;

use super::run_report::ShardInfo;
use crate::rendezvous;
use crate::shard::Shard;

impl ShardInfo {
    /// This host's shard of a run (its start instant is filled in by the engine).
    pub fn of_this_host(host: Shard, scenario_sha256: String, start: &str, target: SocketAddr) -> ShardInfo {
        ShardInfo {
            index: host.index,
            count: host.count,
            scenario_sha256,
            host: rendezvous::host_name(),
            start: start.to_string(),
            start_unix_us: 0,
            census_scope: census_scope(target),
        }
    }
}

/// This machine's boot id, this process's network namespace and the target: the
/// sockets a census here counts.
fn census_scope(target: SocketAddr) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let netns = std::fs::read_link("/proc/self/ns/net").map(|l| l.display().to_string()).unwrap_or_default();
    format!("{}/{netns} {target}", boot.trim())
}
