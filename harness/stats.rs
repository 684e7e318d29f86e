//! What a phase measures: latency histograms and connection failures by kind.
//!
//! Failures are data, not errors: a small `Copy` enum counted per phase.
//! Histograms are HdrHistograms (1 µs to 60 s, 3 significant digits) that serialize
//! to the V2 format so results of several processes or machines merge exactly.

use std::collections::BTreeMap;
use std::io;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Why a connection failed or was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// ECONNREFUSED: nothing listens, or the listener refused.
    Refused,
    /// The TCP connect did not finish before the handshake timeout (or ETIMEDOUT).
    TimedOut,
    /// EADDRNOTAVAIL: no free local port toward the target.
    AddrNotAvailable,
    /// EMFILE / ENFILE: out of descriptors on the client side.
    TooManyOpenFiles,
    /// ECONNRESET / EPIPE.
    Reset,
    /// The broker answered CONNECT with a refusal code.
    ConnackRefused,
    /// The TCP connect succeeded, then EOF before any CONNACK.
    ClosedBeforeConnack,
    /// No CONNACK before the handshake timeout.
    ConnackTimeout,
    /// The target sent bytes that are not valid MQTT.
    Protocol,
    /// An established connection was closed by the target (EOF) before sockcap closed it.
    ClosedByPeer,
    /// No PINGRESP within the keep-alive interval.
    PingTimeout,
    /// A close that waits for the target's FIN did not see it in time.
    CloseTimeout,
    /// The operation never reported an outcome: the phase gave up on it past its timeout
    /// (a fault of sockcap's, not of the target).
    NoOutcome,
    /// Any other errno (kept in [`ErrorCounts::other_errnos`]).
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Refused,
        ErrorKind::TimedOut,
        ErrorKind::AddrNotAvailable,
        ErrorKind::TooManyOpenFiles,
        ErrorKind::Reset,
        ErrorKind::ConnackRefused,
        ErrorKind::ClosedBeforeConnack,
        ErrorKind::ConnackTimeout,
        ErrorKind::Protocol,
        ErrorKind::ClosedByPeer,
        ErrorKind::PingTimeout,
        ErrorKind::CloseTimeout,
        ErrorKind::NoOutcome,
        ErrorKind::Other,
    ];

    /// The key in reports and expectations (`errors.refused`).
    pub fn key(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::AddrNotAvailable => "addr_not_available",
            ErrorKind::TooManyOpenFiles => "too_many_open_files",
            ErrorKind::Reset => "reset",
            ErrorKind::ConnackRefused => "connack_refused",
            ErrorKind::ClosedBeforeConnack => "closed_before_connack",
            ErrorKind::ConnackTimeout => "connack_timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::ClosedByPeer => "closed_by_peer",
            ErrorKind::PingTimeout => "ping_timeout",
            ErrorKind::CloseTimeout => "close_timeout",
            ErrorKind::NoOutcome => "no_outcome",
            ErrorKind::Other => "other",
        }
    }

    /// The kind named by a report key.
    pub fn from_key(key: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Classify an I/O error; the errno is returned for [`ErrorKind::Other`].
    pub fn classify(err: &io::Error) -> (ErrorKind, Option<i32>) {
        let kind = match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorKind::Refused,
            Some(libc::ETIMEDOUT) => ErrorKind::TimedOut,
            Some(libc::EADDRNOTAVAIL) => ErrorKind::AddrNotAvailable,
            Some(libc::EMFILE | libc::ENFILE) => ErrorKind::TooManyOpenFiles,
            Some(libc::ECONNRESET | libc::EPIPE) => ErrorKind::Reset,
            Some(errno) => return (ErrorKind::Other, Some(errno)),
            None => match err.kind() {
                io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
                io::ErrorKind::TimedOut => ErrorKind::TimedOut,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
                io::ErrorKind::UnexpectedEof => ErrorKind::ClosedByPeer,
                _ => ErrorKind::Other,
            },
        };
        (kind, None)
    }
}

/// Failures counted by kind, with the errno of each `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: [u64; ErrorKind::ALL.len()],
    /// errno → count, for [`ErrorKind::Other`].
    pub other_errnos: BTreeMap<i32, u64>,
}

impl ErrorCounts {
    pub fn record(&mut self, kind: ErrorKind, errno: Option<i32>) {
        self.counts[kind as usize] += 1;
        if let Some(errno) = errno {
            *self.other_errnos.entry(errno).or_default() += 1;
        }
    }

    /// `n` failures of a kind that has no errno.
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        self.counts[kind as usize] += n;
    }

    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `kind key → count` for every kind, zeros included (a stable report shape).
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL.into_iter().map(|k| (k.key().to_string(), self.get(k))).collect()
    }
}

/// Why a written latency (`20ms`, `500us`, `1.5s`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyText {
    NotANumber,
    /// A number without a unit: callers say which units fit.
    NoUnit,
    UnknownUnit(String),
}

/// A latency written with a unit (`us`/`µs`, `ms`, `s`; `_` separators allowed), in µs.
pub fn parse_latency_us(text: &str) -> Result<f64, LatencyText> {
    let text = text.trim().replace('_', "");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or(LatencyText::NotANumber)?;
    let scale = match unit.trim() {
        "us" | "µs" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        "" => return Err(LatencyText::NoUnit),
        other => return Err(LatencyText::UnknownUnit(other.to_string())),
    };
    Ok(number * scale)
}

/// Largest latency a histogram records exactly; larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid");
        Latency { hist }
    }

    /// Record one latency (values outside 1 µs ..= 60 s are clamped).
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Add another histogram's samples (exact merge).
    pub fn merge(&mut self, other: &Latency) {
        self.hist.add(&other.hist).expect("histograms with identical bounds always merge");
    }

    /// The summary written to reports, with the V2-serialized histogram in base64.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        LatencySummary {
            count: h.len(),
            min: if empty { 0 } else { h.min() },
            mean: if empty { 0.0 } else { (h.mean() * 10.0).round() / 10.0 },
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: if empty { 0 } else { h.max() },
            hdr: encode_histogram(h),
        }
    }

    /// The percentile distribution as HdrHistogram's percentile output lists it:
    /// `(quantile, µs)` with `ticks_per_half_distance` steps each time the distance to
    /// 100% halves (5 is HdrHistogram's default), ending at `(1.0, max)`. Empty when empty.
    pub fn quantiles(&self, ticks_per_half_distance: u32) -> impl Iterator<Item = (f64, u64)> + '_ {
        let ticks = ticks_per_half_distance.max(1);
        self.hist.iter_quantiles(ticks).map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
    }

    /// Rebuild from a summary's `hdr` field.
    pub fn from_hdr(hdr: &str) -> Result<Latency, HdrError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(hdr).map_err(|e| HdrError(e.to_string()))?;
        let decoded: Histogram<u64> =
            Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| HdrError(format!("{e:?}")))?;
        let mut latency = Latency::new();
        latency.hist.add(&decoded).map_err(|e| HdrError(format!("{e:?}")))?;
        Ok(latency)
    }
}

/// A histogram in a report could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("serialized histogram is not valid: {0}")]
pub struct HdrError(String);

fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Latency percentiles in microseconds, and the histogram they came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// HdrHistogram V2 serialization, base64 (standard alphabet, padded).
    pub hdr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trips_exactly() {
        let mut a = Latency::new();
        for us in [5, 80, 1_200, 45_000, 3_000_000] {
            a.record_us(us);
        }
        let summary = a.summary();
        let b = Latency::from_hdr(&summary.hdr).unwrap();
        assert_eq!(b.summary(), summary);
    }

    #[test]
    fn merged_counts_add_up() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        (1..=100).for_each(|v| a.record_us(v));
        (101..=300).for_each(|v| b.record_us(v));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 300);
        assert_eq!(s.max, 300);
        assert_eq!(s.p50, 150);
    }

    #[test]
    fn errno_classification() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(ErrorKind::classify(&refused), (ErrorKind::Refused, None));
        let odd = io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert_eq!(ErrorKind::classify(&odd), (ErrorKind::Other, Some(libc::ENETUNREACH)));
        let mut counts = ErrorCounts::default();
        counts.record(ErrorKind::Other, Some(libc::ENETUNREACH));
        counts.record(ErrorKind::Refused, None);
        assert_eq!(counts.total(), 2);
        assert_eq!(counts.other_errnos[&libc::ENETUNREACH], 1);
    }

    #[test]
    fn keys_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_key(k.key()), Some(k));
        }
    }

    /// The array index of a kind is its place in `ALL`.
    #[test]
    fn every_kind_counts_in_its_own_place() {
        let mut counts = ErrorCounts::default();
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            counts.add(k, i as u64 + 1);
        }
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(counts.get(k), i as u64 + 1, "{}", k.key());
        }
        assert_eq!(counts.to_map()["no_outcome"], counts.get(ErrorKind::NoOutcome));
    }
}
