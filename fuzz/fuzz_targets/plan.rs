//! The scenario loader: TOML text to a checked plan, and the figures the run sizes
//! itself by. A target that names a host would be looked up in DNS: such inputs are
//! skipped, so fuzzing sends no query.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sockcap::plan::Plan;
use sockcap::shard::Shard;

/// Whether `parse_target` would resolve the scenario's target as a host name.
fn looks_up_a_name(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else { return false };
    let Some(target) = value.get("target").and_then(|t| t.as_str()) else { return false };
    let t = target.trim();
    let literal = t == "embedded"
        || t.parse::<SocketAddr>().is_ok()
        || t.strip_prefix("localhost:").is_some_and(|p| p.parse::<u16>().is_ok());
    !literal
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if looks_up_a_name(text) {
        return;
    }
    let Ok(plan) = Plan::from_toml(Path::new("fuzz.toml"), text) else { return };
    let _ = plan.peak_connections();
    let _ = plan.peak_held();
    let _ = plan.connections_before(plan.phases.len());
    let share = plan.host_share(Shard { index: 2, count: 3 });
    let _ = share.peak_connections();
});
