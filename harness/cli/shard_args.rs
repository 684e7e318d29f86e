//! The shard options of `sockcap run`: `--shard I/N|auto`, `--rendezvous HOST:PORT`,
//! `--start-at RFC3339`, turned into the host's [`Shard`], its [`ShardInfo`] and the
//! engine's [`StartGate`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::failure::Failure;
use crate::engine::StartGate;
use crate::rendezvous::{self, Member, Token, TOKEN_ENV};
use crate::shard::Shard;

/// The shard options of `sockcap run`.
#[derive(Debug, clap::Args)]
pub struct ShardOptions {
    /// Run shard I of N of the scenario (connection g is shard g mod N's), one per
    /// host; "auto" reads I from $JOB_COMPLETION_INDEX and N from $SOCKCAP_SHARDS.
    /// Merge the shards' --json reports with `sockcap merge`.
    #[arg(long, value_name = "I/N|auto", value_parser = parse_shard)]
    pub shard: Option<ShardArg>,
    /// Start phase 1 together with the other shards: shard 0 listens on PORT, the
    /// others register at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "start_at")]
    pub rendezvous: Option<String>,
    /// A file whose content (at least 16 bytes) every shard of the run shares: shard 0
    /// admits only shards that prove they hold it. Default: $SOCKCAP_RENDEZVOUS_TOKEN.
    #[arg(long, value_name = "FILE", requires = "rendezvous")]
    pub rendezvous_token_file: Option<PathBuf>,
    /// How long a shard waits for its peers at the rendezvous before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub rendezvous_timeout: Duration,
    /// Start phase 1 at this instant (UTC RFC 3339, e.g. 2026-11-27T18:30:00Z): for
    /// shards started by other means than a rendezvous; the hosts' clocks must agree.
    #[arg(long, value_name = "RFC3339")]
    pub start_at: Option<String>,
}

/// `--shard`: a fixed shard, or one read from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    /// `JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job) of `SOCKCAP_SHARDS`.
    Auto,
}

pub fn parse_shard(text: &str) -> Result<ShardArg, String> {
    match text {
        "auto" => Ok(ShardArg::Auto),
        fixed => Shard::parse(fixed).map(ShardArg::Fixed).map_err(|e| format!("{e}, or \"auto\"")),
    }
}

/// The variables `--shard auto` reads.
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
pub const COUNT_VAR: &str = "SOCKCAP_SHARDS";

/// The host's shard of a run: all of it without `--shard`.
pub fn host_shard(arg: Option<ShardArg>, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    match arg {
        None => Ok(Shard::ALL),
        Some(ShardArg::Fixed(shard)) => Ok(shard),
        Some(ShardArg::Auto) => {
            let read = |var: &str| -> Result<u32, String> {
                let value = env(var).ok_or_else(|| {
                    format!("--shard auto: ${var} is not set; a Kubernetes Indexed Job sets {INDEX_VAR}, set {COUNT_VAR} to its completions")
                })?;
                value.trim().parse().map_err(|_| format!("--shard auto: ${var} is `{value}`, not a number"))
            };
            let (index, count) = (read(INDEX_VAR)?, read(COUNT_VAR)?);
            Shard::parse(&format!("{index}/{count}"))
                .map_err(|e| format!("--shard auto (${INDEX_VAR}/${COUNT_VAR}): {e}"))
        }
    }
}

/// SHA-256 of the scenario file's bytes, in hex.
pub fn scenario_sha256(path: &Path) -> Result<String, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::bad_input(anyhow::anyhow!("{}: cannot read the scenario: {e}", path.display())))?;
    Ok(crate::report::frame::hex_sha256(&bytes))
}

/// How phase 1's start is agreed, checked before anything starts: `--rendezvous`,
/// `--start-at` (which must lie ahead), or neither.
pub fn start_gate(args: &ShardOptions, host: Shard, sha256: &str) -> Result<(StartGate, &'static str), Failure> {
    if args.shard.is_none() && (args.rendezvous.is_some() || args.start_at.is_some()) {
        let why = "--rendezvous and --start-at start the shards of a fleet together; give this run its --shard I/N";
        return Err(Failure::bad_input(anyhow::anyhow!(why)));
    }
    if let Some(text) = &args.start_at {
        let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
            Failure::bad_input(anyhow::anyhow!("--start-at {text}: {e}; write UTC RFC 3339, e.g. 2026-11-27T18:30:00Z"))
        })?;
        let ahead = at.duration_since(SystemTime::now()).map_err(|_| {
            Failure::bad_input(anyhow::anyhow!(
                "--start-at {text} has passed; give an instant ahead of every host's start"
            ))
        })?;
        if ahead > Duration::from_secs(24 * 3600) {
            return Err(Failure::bad_input(anyhow::anyhow!("--start-at {text} is more than a day ahead")));
        }
        let unix_us = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        return Ok((StartGate::At(unix_us), "start_at"));
    }
    match &args.rendezvous {
        Some(addr) => {
            let token = rendezvous_token(args.rendezvous_token_file.as_deref(), |var| std::env::var(var).ok())?;
            let member = Member::new(host, sha256.to_string());
            let (addr, within) = (addr.clone(), args.rendezvous_timeout);
            let agreed = async move { rendezvous::agree(&member, token.as_ref(), &addr, within).await };
            Ok((StartGate::Rendezvous(Box::pin(agreed)), "rendezvous"))
        }
        None => Ok((StartGate::Now, "none")),
    }
}

/// The rendezvous token: `--rendezvous-token-file`, else `$SOCKCAP_RENDEZVOUS_TOKEN`, else
/// none. One that cannot be read or is too short is bad input (exit 2).
fn rendezvous_token(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Option<Token>, Failure> {
    let token = match (file, env(TOKEN_ENV)) {
        (Some(path), _) => Token::from_file(path).map(Some),
        (None, Some(value)) => Token::from_env_value(&value).map(Some),
        (None, None) => Ok(None),
    };
    token.map_err(|e| Failure::bad_input(anyhow::anyhow!(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reads_the_indexed_job() {
        let env = |index: &'static str, count: &'static str| {
            move |var: &str| match var {
                INDEX_VAR => Some(index.to_string()),
                COUNT_VAR => Some(count.to_string()),
                _ => None,
            }
        };
        assert_eq!(host_shard(Some(ShardArg::Auto), env("2", "5")), Ok(Shard { index: 2, count: 5 }));
        assert!(host_shard(Some(ShardArg::Auto), env("5", "5")).unwrap_err().contains("INDEX < COUNT"));
        assert!(host_shard(Some(ShardArg::Auto), env("x", "5")).unwrap_err().contains("not a number"));
        let unset = host_shard(Some(ShardArg::Auto), |_| None).unwrap_err();
        assert!(unset.contains("JOB_COMPLETION_INDEX is not set"), "{unset}");
        assert_eq!(host_shard(None, |_| None), Ok(Shard::ALL));
        assert_eq!(parse_shard("1/3"), Ok(ShardArg::Fixed(Shard { index: 1, count: 3 })));
        assert!(parse_shard("3/3").is_err());
    }
}
