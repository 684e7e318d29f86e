//! The reconnect policy (`[client] reconnect`): [`ReconnectPolicy`], an exponential
//! backoff from a floor to a ceiling with jitter and an optional attempt limit.
//!
//! The schedule is a pure function of the attempt number and a random draw
//! ([`ReconnectPolicy::delay`]), so its bounds are tested without clocks; the draw is
//! itself a function of the connection number and the attempt
//! ([`ReconnectPolicy::wait`]), so a run's schedule is the same on every run, whatever
//! the worker processes or shards it is spread over.

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
    /// Time allowed to one attempt, from its dial to its CONNACK ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

/// One attempt's time when the scenario names none: a connect phase's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// The wait before attempt `attempt` of connection `n` (its number in the run): the
    /// jitter drawn from `(n, attempt)` alone, so two runs of a scenario wait alike.
    pub fn wait(&self, n: u64, attempt: u32) -> Option<Duration> {
        self.delay(attempt, draw(draw(n) ^ u64::from(attempt)))
    }
}

/// A uniform 64-bit draw from a seed (SplitMix64): [`ReconnectPolicy::wait`] seeds it
/// with the connection number and the attempt, so no two clients draw alike and every
/// run draws the same.
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
    let timeout = match r.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(text) => check.duration("client.reconnect.timeout", text)?,
    };
    if timeout.is_zero() {
        return Err(check.err("client.reconnect.timeout", "an attempt needs some time; e.g. \"10s\""));
    }
    Ok(Some(ReconnectPolicy { floor, ceiling, jitter, max_attempts, timeout }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter, max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy {
            floor: Duration::from_millis(100),
            ceiling: Duration::from_secs(10),
            jitter,
            max_attempts,
            timeout: DEFAULT_TIMEOUT,
        }
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

    /// The tenth of `window` each of 10,000 connections' first reconnects falls in.
    fn first_attempts_by_tenth(p: &ReconnectPolicy, window: Duration) -> [u32; 10] {
        let mut tenths = [0u32; 10];
        for n in 0..10_000u64 {
            let wait = p.wait(n, 1).unwrap();
            assert!(wait <= window, "connection {n} waits {wait:?}, past the window {window:?}");
            tenths[(wait.as_nanos() * 10 / window.as_nanos()).min(9) as usize] += 1;
        }
        tenths
    }

    #[test]
    fn full_jitter_spreads_a_storm_over_the_window() {
        // 10,000 clients lost at once: their first attempts fall in all ten tenths of the
        // 100ms window, none more than twice its share (1,000) nor under half of it.
        let tenths = first_attempts_by_tenth(&policy(Jitter::Full, None), MS(100));
        assert!(tenths.iter().all(|&c| (500..=2000).contains(&c)), "{tenths:?}");
        // With no jitter they all come back at the floor, at once.
        let none = policy(Jitter::None, None);
        assert!((0..10_000).all(|n| none.wait(n, 1) == Some(MS(100))));
        // Equal jitter: the upper half of the window only, spread over it.
        let tenths = first_attempts_by_tenth(&policy(Jitter::Equal, None), MS(100));
        assert_eq!(tenths[..5].iter().sum::<u32>(), 0, "{tenths:?}");
        assert!(tenths[5..].iter().all(|&c| (1000..=4000).contains(&c)), "{tenths:?}");
    }

    #[test]
    fn one_connections_attempts_follow_the_policy() {
        // No jitter: floor, doubling, ceiling, then the attempt limit, for any connection.
        let p = policy(Jitter::None, Some(10));
        for n in [0, 1, 41, u64::MAX] {
            let waits: Vec<_> = (1..=11).map_while(|a| p.wait(n, a)).collect();
            assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000].map(MS));
        }
        // Full and equal jitter: attempt a waits within [0, d] and [d/2, d] of its backoff d.
        for jitter in [Jitter::Full, Jitter::Equal] {
            let p = policy(jitter, Some(10));
            for n in 0..1000u64 {
                for a in 1..=10 {
                    let (d, wait) = (p.backoff(a), p.wait(n, a).unwrap());
                    let low = if jitter == Jitter::Equal { d / 2 } else { Duration::ZERO };
                    assert!(low <= wait && wait <= d, "{jitter:?} connection {n} attempt {a}: {wait:?} of {d:?}");
                }
                assert_eq!(p.wait(n, 11), None, "given up after max_attempts");
            }
        }
    }

    #[test]
    fn the_jittered_schedule_is_the_same_on_every_run() {
        let p = policy(Jitter::Full, None);
        let schedule = |n| (1..=8).map(|a| p.wait(n, a).unwrap()).collect::<Vec<_>>();
        assert_eq!(schedule(7), schedule(7), "a function of (connection, attempt) alone");
        assert_ne!(schedule(7), schedule(8), "two connections draw apart");
        assert_ne!(p.wait(7, 1), p.wait(7, 2), "two attempts draw apart");
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
        assert_eq!(parse("backoff = \"1s..1s\"").unwrap().unwrap().timeout, DEFAULT_TIMEOUT);
        assert_eq!(parse("backoff = \"1s..1s\"\ntimeout = \"2s\"").unwrap().unwrap().timeout, MS(2000));
        for (body, field, hint) in [
            ("backoff = \"100ms\"", "client.reconnect.backoff", "FLOOR..CEILING"),
            ("backoff = \"10s..1s\"", "client.reconnect.backoff", "below the floor"),
            ("backoff = \"0s..1s\"", "client.reconnect.backoff", "at least 1ms"),
            ("backoff = \"1x..1s\"", "client.reconnect.backoff", "not a duration"),
            ("backoff = \"1s..2s\"\njitter = \"some\"", "client.reconnect.jitter", "none, full, equal"),
            ("backoff = \"1s..2s\"\nmax_attempts = 0", "client.reconnect.max_attempts", "leave it out"),
            ("backoff = \"1s..2s\"\ntimeout = \"0s\"", "client.reconnect.timeout", "needs some time"),
            ("backoff = \"1s..2s\"\ntimeout = \"soon\"", "client.reconnect.timeout", "not a duration"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.field == field && err.message.contains(hint), "{body}: {err}");
            assert!(err.to_string().starts_with("s.toml: field"), "{err}");
        }
        assert_eq!(reconnect_policy(&Check { file: std::path::Path::new("s.toml") }, None).unwrap(), None);
    }
}
