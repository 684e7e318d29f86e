//! The reconnect policy (`[client] reconnect`): [`ReconnectPolicy`], an exponential
//! backoff from a floor to a ceiling with jitter and an optional attempt limit.
//!
//! The schedule is a pure function of the attempt number and a random draw
//! ([`ReconnectPolicy::delay`]), so its bounds are tested without clocks.

use std::time::Duration;

use super::error::{Check, PlanError};
use crate::scenario::ReconnectSection;

/// How the wait before an attempt is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the backoff: every client lost at once comes back at once.
    None,
    /// Uniform in `[0, backoff]`: a storm spreads over the whole window.
    Full,
    /// `backoff / 2` plus uniform in `[0, backoff / 2]`.
    Equal,
}

impl Jitter {
    pub const NAMES: &'static str = "none, full, equal";

    pub fn parse(s: &str) -> Option<Jitter> {
        match s {
            "none" => Some(Jitter::None),
            "full" => Some(Jitter::Full),
            "equal" => Some(Jitter::Equal),
            _ => None,
        }
    }
}

/// When a lost or refused connection tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The backoff before the first attempt.
    pub floor: Duration,
    /// The backoff never grows past this.
    pub ceiling: Duration,
    pub jitter: Jitter,
    /// Attempts after one loss before the connection is given up; `None`: no limit.
    pub max_attempts: Option<u32>,
}

impl ReconnectPolicy {
    /// The backoff before attempt `attempt` (1 for the first after a loss), before
    /// jitter: `floor * 2^(attempt-1)`, at most `ceiling`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u128 << doublings;
        let nanos = self.floor.as_nanos().saturating_mul(factor).min(self.ceiling.as_nanos());
        Duration::from_nanos(nanos as u64)
    }

    /// The wait before attempt `attempt`, with `random` a uniform 64-bit draw; `None`
    /// when the attempt limit is reached (the connection stays lost).
    pub fn delay(&self, attempt: u32, random: u64) -> Option<Duration> {
        if attempt == 0 || self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let base = self.backoff(attempt).as_nanos() as u64;
        // A share of `span` in [0, span], from the draw's top bits.
        let share = |span: u64| ((u128::from(span) * u128::from(random >> 11)) >> 53) as u64;
        let nanos = match self.jitter {
            Jitter::None => base,
            Jitter::Full => share(base),
            Jitter::Equal => base / 2 + share(base - base / 2),
        };
        Some(Duration::from_nanos(nanos))
    }
}

/// A uniform 64-bit draw from a seed (SplitMix64): the engine seeds it with the run,
/// the connection number and the attempt, so no two clients draw alike.
pub fn draw(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn reconnect_policy(
    check: &Check,
    section: Option<&ReconnectSection>,
) -> Result<Option<ReconnectPolicy>, PlanError> {
    let Some(r) = section else { return Ok(None) };
    let field = "client.reconnect.backoff";
    let Some((floor, ceiling)) = r.backoff.split_once("..") else {
        return Err(
            check.err(field, format!("`{}` is not a range; write FLOOR..CEILING, e.g. \"100ms..10s\"", r.backoff))
        );
    };
    let (floor, ceiling) = (check.duration(field, floor)?, check.duration(field, ceiling)?);
    if floor < Duration::from_millis(1) {
        return Err(check.err(field, "the floor must be at least 1ms; e.g. \"100ms..10s\""));
    }
    if ceiling < floor {
        return Err(
            check.err(field, format!("the ceiling is below the floor in `{}`; write FLOOR..CEILING", r.backoff))
        );
    }
    let jitter = match r.jitter.as_deref() {
        None => Jitter::Full,
        Some(name) => Jitter::parse(name).ok_or_else(|| {
            check.err("client.reconnect.jitter", format!("`{name}` is not a jitter; use one of {}", Jitter::NAMES))
        })?,
    };
    let max_attempts = match r.max_attempts {
        None => None,
        Some(n) => Some(u32::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| {
            check.err(
                "client.reconnect.max_attempts",
                format!("{n} is not a number of attempts; use 1 to {}, or leave it out for no limit", u32::MAX),
            )
        })?),
    };
    Ok(Some(ReconnectPolicy { floor, ceiling, jitter, max_attempts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter, max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy { floor: Duration::from_millis(100), ceiling: Duration::from_secs(10), jitter, max_attempts }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_backoff_doubles_from_the_floor_to_the_ceiling() {
        let p = policy(Jitter::None, None);
        let waits: Vec<_> = (1..=9).map(|a| p.delay(a, 0).unwrap()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(MS));
        assert_eq!(p.delay(1_000_000, u64::MAX), Some(Duration::from_secs(10)));
        assert_eq!(p.delay(0, 0), None);
    }

    #[test]
    fn the_attempt_limit_ends_the_schedule() {
        let p = policy(Jitter::Full, Some(3));
        assert!((1..=3).all(|a| p.delay(a, 7).is_some()));
        assert_eq!(p.delay(4, 7), None);
        assert!(policy(Jitter::Full, None).delay(u32::MAX, 7).is_some());
    }

    #[test]
    fn jitter_stays_in_its_window() {
        let (full, equal) = (policy(Jitter::Full, None), policy(Jitter::Equal, None));
        for attempt in 1..12 {
            let base = full.backoff(attempt);
            assert_eq!(full.delay(attempt, 0), Some(Duration::ZERO));
            assert!(base - full.delay(attempt, u64::MAX).unwrap() < Duration::from_micros(1));
            assert_eq!(equal.delay(attempt, 0), Some(base / 2));
            assert!(base - equal.delay(attempt, u64::MAX).unwrap() < Duration::from_micros(1));
            for seed in 0..200 {
                let (f, e) = (full.delay(attempt, draw(seed)).unwrap(), equal.delay(attempt, draw(seed)).unwrap());
                assert!(f <= base && e >= base / 2 && e <= base, "attempt {attempt}: {f:?} {e:?} of {base:?}");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_a_storm_over_the_window() {
        // 1,000 clients lost at once: their first attempts fall in all ten tenths of
        // the 100ms window, none more than twice its share; with no jitter all at once.
        let p = policy(Jitter::Full, None);
        let mut tenths = [0u32; 10];
        for n in 0..1000u64 {
            let wait = p.delay(1, draw(n)).unwrap();
            tenths[(wait.as_nanos() * 10 / MS(100).as_nanos()).min(9) as usize] += 1;
        }
        assert!(tenths.iter().all(|&c| (50..200).contains(&c)), "{tenths:?}");
        let none = policy(Jitter::None, None);
        assert!((0..1000).all(|n| none.delay(1, draw(n)) == Some(MS(100))));
    }

    fn parse(body: &str) -> Result<Option<ReconnectPolicy>, PlanError> {
        let section: ReconnectSection = toml::from_str(body).unwrap();
        reconnect_policy(&Check { file: std::path::Path::new("s.toml") }, Some(&section))
    }

    #[test]
    fn the_policy_parses_and_bad_values_name_the_field() {
        let p = parse("backoff = \"100ms..10s\"\njitter = \"equal\"\nmax_attempts = 20").unwrap().unwrap();
        assert_eq!(p, ReconnectPolicy { jitter: Jitter::Equal, max_attempts: Some(20), ..policy(Jitter::None, None) });
        assert_eq!(parse("backoff = \"1s..1s\"").unwrap().unwrap().jitter, Jitter::Full);
        for (body, field, hint) in [
            ("backoff = \"100ms\"", "client.reconnect.backoff", "FLOOR..CEILING"),
            ("backoff = \"10s..1s\"", "client.reconnect.backoff", "below the floor"),
            ("backoff = \"0s..1s\"", "client.reconnect.backoff", "at least 1ms"),
            ("backoff = \"1x..1s\"", "client.reconnect.backoff", "not a duration"),
            ("backoff = \"1s..2s\"\njitter = \"some\"", "client.reconnect.jitter", "none, full, equal"),
            ("backoff = \"1s..2s\"\nmax_attempts = 0", "client.reconnect.max_attempts", "leave it out"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.field == field && err.message.contains(hint), "{body}: {err}");
            assert!(err.to_string().starts_with("s.toml: field"), "{err}");
        }
        assert_eq!(reconnect_policy(&Check { file: std::path::Path::new("s.toml") }, None).unwrap(), None);
    }
}
