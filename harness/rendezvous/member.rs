//! Who a shard is, as it registers with shard 0, and why shard 0 refuses a member of
//! another run (another scenario, N or version).

use serde::{Deserialize, Serialize};

use crate::shard::Shard;

/// Who this shard is, as it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The shard's index, 0..count.
    pub index: u32,
    /// N: the shards of the run.
    pub count: u32,
    /// SHA-256 of the scenario file's bytes, in hex.
    pub scenario_sha256: String,
    /// The sockcap version.
    pub version: String,
    /// The host name (the pod name in Kubernetes).
    pub host: String,
}

impl Member {
    pub fn new(shard: Shard, scenario_sha256: String) -> Member {
        Member {
            index: shard.index,
            count: shard.count,
            scenario_sha256,
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_name(),
        }
    }

    /// Why shard 0 (`self`) refuses `other`, if it does.
    pub(super) fn refuses(&self, other: &Member) -> Option<String> {
        if other.count != self.count {
            return Some(format!(
                "it runs --shard {}/{} but shard 0 runs {}/{}: every shard must be given the same N",
                other.index, other.count, self.index, self.count
            ));
        }
        if other.index == 0 || other.index >= self.count {
            return Some(format!("index {} is not one of 1..{} (shard 0 leads)", other.index, self.count));
        }
        if other.scenario_sha256 != self.scenario_sha256 {
            return Some(format!(
                "it runs another scenario (sha256 {:.12}… there, {:.12}… on shard 0): every shard must run the same file",
                other.scenario_sha256, self.scenario_sha256
            ));
        }
        if other.version != self.version {
            return Some(format!(
                "it runs sockcap {} but shard 0 runs {}: use one build on every host",
                other.version, self.version
            ));
        }
        None
    }
}

/// The machine's host name (the pod name in Kubernetes).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u32, count: u32, sha: &str) -> Member {
        Member { index, count, scenario_sha256: sha.into(), version: "1".into(), host: format!("h{index}") }
    }

    #[test]
    fn other_n_version_and_index_are_refused() {
        let lead = member(0, 3, "a");
        assert!(lead.refuses(&member(1, 4, "a")).unwrap().contains("same N"));
        assert!(lead.refuses(&member(3, 3, "a")).unwrap().contains("not one of"));
        assert!(lead.refuses(&member(1, 3, "b")).unwrap().contains("another scenario"));
        let mut other = member(2, 3, "a");
        other.version = "2".into();
        assert!(lead.refuses(&other).unwrap().contains("sockcap 2"));
        assert_eq!(lead.refuses(&member(2, 3, "a")), None);
    }
}
