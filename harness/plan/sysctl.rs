//! Per-namespace sysctls a scenario sets (`[netns] sysctl`, a phase's `sysctl`):
//! [`Sysctl`], checked to be `net.*` ones this kernel has.

use std::path::{Path, PathBuf};

use super::error::{Check, PlanError};

/// One per-namespace sysctl to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted name, `net.ipv4.tcp_tw_reuse`.
    pub name: String,
    pub value: String,
}

impl Sysctl {
    /// The file under /proc/sys.
    pub fn path(&self) -> PathBuf {
        Path::new("/proc/sys").join(self.name.replace('.', "/"))
    }
}

/// Sysctls a scenario may set: per-network-namespace ones only (`net.*`), named in
/// full (`net.ipv4.tcp_tw_reuse`) or by their last part (`tcp_tw_reuse`).
pub(super) fn sysctls(
    check: &Check,
    at: &str,
    map: &std::collections::BTreeMap<String, toml::Value>,
) -> Result<Vec<Sysctl>, PlanError> {
    map.iter()
        .map(|(key, value)| {
            let field = format!("{at}.{key}");
            let name = resolve_sysctl(key).map_err(|m| check.err(&field, m))?;
            let value = match value {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                other => {
                    return Err(
                        check.err(&field, format!("expected a number or a string, found a {}", other.type_str()))
                    )
                }
            };
            Ok(Sysctl { name, value })
        })
        .collect()
}

fn resolve_sysctl(key: &str) -> Result<String, String> {
    let dotted = key.replace('/', ".");
    let candidates: Vec<String> = if dotted.contains('.') {
        vec![dotted.clone()]
    } else {
        ["net.ipv4", "net.core", "net.ipv6", "net.netfilter"].iter().map(|d| format!("{d}.{dotted}")).collect()
    };
    if !dotted.starts_with("net.") && dotted.contains('.') {
        return Err(format!("`{key}` is not a network sysctl; only net.* sysctls belong to a namespace"));
    }
    candidates
        .into_iter()
        .find(|name| Path::new("/proc/sys").join(name.replace('.', "/")).is_file())
        .ok_or_else(|| format!("no sysctl `{key}` under /proc/sys/net; check the name (e.g. tcp_tw_reuse)"))
}
