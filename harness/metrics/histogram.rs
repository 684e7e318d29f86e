//! A latency histogram ([`Latency`], an HdrHistogram in µs) as Prometheus buckets in
//! seconds: the counts at fixed upper bounds, for `encode_histogram`.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::latency::Latency;

/// Upper bounds, µs: 100 µs to 60 s (the HdrHistogram's top), about 2.5× apart.
const BOUNDS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// `(upper bound in s, samples in that bucket)`, the last bound `+Inf`: prometheus-client
/// adds the buckets up as it writes them.
pub fn buckets(latency: &Latency) -> Vec<(f64, u64)> {
    let mut below = 0;
    let mut out: Vec<(f64, u64)> = BOUNDS_US
        .iter()
        .map(|&us| {
            let at_most = latency.count_at_most(us);
            let bucket = at_most.saturating_sub(below);
            below = below.max(at_most);
            (us as f64 / 1e6, bucket)
        })
        .collect();
    out.push((f64::INFINITY, latency.count().saturating_sub(below)));
    out
}

/// A histogram as Prometheus writes it, computed once (walking an HdrHistogram for every
/// bound takes milliseconds: not at every scrape).
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    sum_s: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Buckets {
    pub fn of(latency: &Latency) -> Buckets {
        Buckets { sum_s: latency.sum_us() / 1e6, count: latency.count(), buckets: buckets(latency) }
    }
}

/// Encode one histogram family: a series per `(label value, buckets)`.
pub fn encode(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, &Buckets)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (value, histogram) in series {
        let labels = [(label, *value)];
        let mut metric = family.encode_family(&labels)?;
        metric.encode_histogram::<NoLabelSet>(histogram.sum_s, histogram.count, &histogram.buckets, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_add_up_to_the_count() {
        let mut latency = Latency::new();
        for us in [50, 80, 900, 40_000, 70_000_000] {
            latency.record_us(us);
        }
        let buckets = buckets(&latency);
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 5);
        assert_eq!(buckets[0], (0.0001, 2), "two samples at most 100 µs");
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 0)), "60 s is the histogram's top: 70 s counts there");
        let at_60s = buckets.iter().find(|(le, _)| *le == 60.0).map(|(_, n)| *n);
        assert_eq!(at_60s, Some(1));
    }
}
