//! Connection failures by kind: data, not errors. A small `Copy` enum
//! ([`ErrorKind`]) counted per phase in [`ErrorCounts`].

use std::collections::BTreeMap;
use std::io;

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
    /// The TLS handshake failed for another reason than a certificate (no common
    /// version or cipher suite, an alert, EOF, or no end before the handshake timeout).
    TlsHandshake,
    /// A certificate was refused: the target's by sockcap (unknown issuer, wrong name,
    /// expired) or sockcap's by the target (an alert about a certificate: mTLS).
    TlsCertificate,
    /// The WebSocket upgrade failed: an HTTP refusal, no `mqtt` subprotocol, or EOF.
    WsUpgrade,
    /// Any other errno (kept in [`ErrorCounts::other_errnos`]).
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 17] = [
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
        ErrorKind::TlsHandshake,
        ErrorKind::TlsCertificate,
        ErrorKind::WsUpgrade,
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
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::TlsCertificate => "tls_certificate",
            ErrorKind::WsUpgrade => "ws_upgrade",
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

#[cfg(test)]
mod tests {
    use super::*;

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
