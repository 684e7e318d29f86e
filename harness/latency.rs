//! Latency histograms: HdrHistograms (1 µs to 60 s, 3 significant digits) that
//! serialize to the V2 format, so results of several processes or machines merge
//! exactly; and latencies written with a unit (`20ms`).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
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

    /// How many samples are at most `us` (as HdrHistogram's buckets resolve it: to
    /// 3 significant digits).
    pub fn count_at_most(&self, us: u64) -> u64 {
        self.hist.count_between(0, us)
    }

    /// The samples' sum in µs (their mean times their count).
    pub fn sum_us(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.mean() * self.hist.len() as f64
        }
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
        check_header(&bytes)?;
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

/// The header of an uncompressed V2 histogram, as [`V2Serializer`] writes it: cookie,
/// payload length, normalizing offset, significant digits, lowest and highest trackable
/// values (all big-endian), integer-to-double ratio.
const HDR_HEADER: usize = 40;
const HDR_V2_COOKIE: u32 = 0x1c84_9313;

/// Refuse what sockcap never writes before the deserializer allocates for it: it
/// allocates the payload length the header claims (up to 4 GiB) and counts for any
/// bounds, from a few bytes of a report.
fn check_header(bytes: &[u8]) -> Result<(), HdrError> {
    let header = bytes.get(..HDR_HEADER).ok_or_else(|| HdrError(format!("{} bytes, no header", bytes.len())))?;
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let be64 = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if be32(0) != HDR_V2_COOKIE {
        return Err(HdrError(format!("cookie {:#010x} is not an uncompressed V2 histogram's", be32(0))));
    }
    let (claimed, follow) = (be32(4) as usize, bytes.len() - HDR_HEADER);
    if claimed > follow {
        return Err(HdrError(format!("the header claims {claimed} bytes of counts, {follow} follow")));
    }
    if be32(12) > 3 || be64(24) > MAX_LATENCY_US {
        return Err(HdrError(format!(
            "{} digits up to {}, wider than sockcap's 3 up to {MAX_LATENCY_US}",
            be32(12),
            be64(24)
        )));
    }
    Ok(())
}

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

    /// Fuzzing the report reader: 40 bytes of a report's `hdr` claiming a 4 GiB
    /// payload made the deserializer allocate 4 GiB.
    #[test]
    fn a_header_claiming_more_than_follows_is_refused_before_allocating() {
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(Latency::new().summary().hdr).unwrap();
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()), HDR_V2_COOKIE);
        bytes[4..8].copy_from_slice(&0xFFFF_FF00u32.to_be_bytes());
        let hdr = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let error = Latency::from_hdr(&hdr).unwrap_err().to_string();
        assert!(error.contains("claims 4294967040 bytes of counts"), "{error}");
        bytes[4..8].copy_from_slice(&0u32.to_be_bytes());
        bytes[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        let wide = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(Latency::from_hdr(&wide).unwrap_err().to_string().contains("wider than"));
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
}
