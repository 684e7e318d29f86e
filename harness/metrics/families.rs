//! Encoding the families several collectors share: a labelled gauge or counter, and
//! the sockets by side and state.

use probe::{StateCounts, TcpState};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A gauge family: one series per label set.
pub fn gauges<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[([(&str, &str); N], u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_gauge(&(*value as i64))?;
    }
    Ok(())
}

/// A counter family (written `NAME_total`): one series per label set.
pub fn counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[([(&str, &str); N], u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

/// `sockets{side, state}`: every reported state of each side, zeros included, so the
/// series stay the same through a run.
pub fn sockets(encoder: &mut DescriptorEncoder, sides: &[(&str, StateCounts)]) -> Result<(), std::fmt::Error> {
    let series: Vec<([(&str, &str); 2], u64)> = sides
        .iter()
        .flat_map(|(side, counts)| {
            TcpState::REPORTED.iter().map(move |state| ([("side", *side), ("state", state.key())], counts.get(*state)))
        })
        .collect();
    gauges(encoder, "sockets", "TCP sockets by side and state at the last census (sock_diag)", &series)
}
