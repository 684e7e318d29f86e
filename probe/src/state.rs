//! TCP states as the kernel numbers them, and a census of sockets by state.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// A TCP state, numbered as in the kernel's `include/net/tcp_states.h`
/// (the same numbers appear in sock_diag replies and in /proc/net/tcp's `st` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The states a census reports (NEW_SYN_RECV is folded into SYN_RECV, as `ss` does):
    /// [`TcpState::ALL`] without its last, NEW_SYN_RECV.
    pub const REPORTED: [TcpState; 11] = match TcpState::ALL.first_chunk::<11>() {
        Some(reported) => *reported,
        None => unreachable!(),
    };

    /// The state for a kernel state number, if it is one.
    pub fn from_kernel(n: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// The key used in reports and expectations: `established`, `time_wait`, ...
    pub fn key(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv | TcpState::NewSynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
        }
    }

    /// The state named by a report key (the inverse of [`TcpState::key`]).
    pub fn from_key(key: &str) -> Option<TcpState> {
        TcpState::REPORTED.into_iter().find(|s| s.key() == key)
    }

    /// The state a census counts this one as: NEW_SYN_RECV as SYN_RECV, any other as itself.
    fn reported(self) -> TcpState {
        if self == TcpState::NewSynRecv {
            TcpState::SynRecv
        } else {
            self
        }
    }

    /// The bit for this state in a sock_diag request's state mask.
    pub fn mask_bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// How many sockets are in each TCP state. Serializes as a map with every
/// reported state's key, zeros included, so reports have a stable shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Indexed by kernel state number; index 0 is unused. NEW_SYN_RECV is
    /// counted under SYN_RECV.
    counts: [u64; 13],
}

impl StateCounts {
    /// Count one socket in `state`.
    pub fn add(&mut self, state: TcpState) {
        self.add_n(state, 1);
    }

    /// Count `n` sockets in `state`.
    pub fn add_n(&mut self, state: TcpState, n: u64) {
        let count = &mut self.counts[state.reported() as usize];
        *count = count.saturating_add(n);
    }

    /// Sockets in `state`.
    pub fn get(&self, state: TcpState) -> u64 {
        self.counts[state.reported() as usize]
    }

    /// Sockets in any state.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// Add another census to this one (for merging results of several processes).
    pub fn merge(&mut self, other: &StateCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// Keep, state by state, the larger of this census and `other` (for censuses of the
    /// same sockets taken by several processes).
    pub fn max_each(&mut self, other: &StateCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// `(state, count)` for every reported state, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::REPORTED.into_iter().map(|s| (s, self.get(s)))
    }
}

impl Serialize for StateCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(TcpState::REPORTED.len()))?;
        for (state, n) in self.iter() {
            map.serialize_entry(state.key(), &n)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for StateCounts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut counts = StateCounts::default();
        for (key, n) in map {
            let state = TcpState::from_key(&key)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown TCP state `{key}`")))?;
            counts.add_n(state, n);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(s as u8), Some(s));
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
    }

    #[test]
    fn new_syn_recv_counts_as_syn_recv() {
        let mut c = StateCounts::default();
        c.add(TcpState::NewSynRecv);
        c.add(TcpState::SynRecv);
        assert_eq!(c.get(TcpState::SynRecv), 2);
        assert_eq!(c.total(), 2);
    }

    #[test]
    fn keys_round_trip() {
        for s in TcpState::REPORTED {
            assert_eq!(TcpState::from_key(s.key()), Some(s));
        }
    }
}
