//! Connection failures by kind: data, not errors. A small `Copy` enum
//! ([`ErrorKind`]) counted per phase in [`ErrorCounts`].
//!
//! A refusal or a server's goodbye that says why is also counted under its reason
//! (`connack_refused.quota_exceeded`, `server_disconnect.session_taken_over`): a
//! breakdown of its kind's count, so totals add only the keys without a dot
//! ([`error_total`]).

use std::collections::BTreeMap;
use std::io;

use crate::protocol::mqtt::reason_name;

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
    /// The broker answered CONNECT with a refusal code (counted by name too).
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
    /// An established MQTT 5 connection ended by the server's DISCONNECT (counted by
    /// reason too: `server_disconnect.session_taken_over`); a drop, like `closed_by_peer`.
    ServerDisconnect,
    /// The server sent MQTT 5's AUTH, which sockcap never asks for: the connection is
    /// closed (DISCONNECT 0x82, protocol error, then FIN) and counted as lost.
    AuthReceived,
    /// A close that waits for the target's FIN did not see it in time.
    CloseTimeout,
    /// The operation never reported an outcome: the phase gave up on it past its timeout
    /// (a fault of sockcap's, not of the target).
    NoOutcome,
    /// A lost connection that `[client] reconnect` gave up on after its `max_attempts`
    /// (its loss alone is no error: it counts under `drops`, its failed attempts under
    /// the phase's `recovery.refusals`).
    ReconnectGaveUp,
    /// A lost connection still trying to come back under `[client] reconnect` when the
    /// phase ended (counted in each phase whose end finds it down): a policy without
    /// `max_attempts` never gives up, and a run must not pass with clients missing.
    StillDown,
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
    pub const ALL: [ErrorKind; 21] = [
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
        ErrorKind::ServerDisconnect,
        ErrorKind::AuthReceived,
        ErrorKind::CloseTimeout,
        ErrorKind::NoOutcome,
        ErrorKind::ReconnectGaveUp,
        ErrorKind::StillDown,
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
            ErrorKind::ServerDisconnect => "server_disconnect",
            ErrorKind::AuthReceived => "auth_received",
            ErrorKind::CloseTimeout => "close_timeout",
            ErrorKind::NoOutcome => "no_outcome",
            ErrorKind::ReconnectGaveUp => "reconnect_gave_up",
            ErrorKind::StillDown => "still_down",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::TlsCertificate => "tls_certificate",
            ErrorKind::WsUpgrade => "ws_upgrade",
            ErrorKind::Other => "other",
        }
    }

    /// Whether the kind's detail is a protocol reason code rather than an errno.
    fn has_reason(self) -> bool {
        matches!(self, ErrorKind::ConnackRefused | ErrorKind::ServerDisconnect)
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

/// The number of failures in a report's `errors` map: its kinds' counts, without the
/// reason breakdowns (keys with a dot), which count the same failures again.
pub fn error_total(errors: &BTreeMap<String, u64>) -> u64 {
    errors.iter().filter(|(k, _)| !k.contains('.')).fold(0, |sum, (_, n)| sum.saturating_add(*n))
}

/// Failures counted by kind, with the errno of each `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: [u64; ErrorKind::ALL.len()],
    /// errno → count, for [`ErrorKind::Other`].
    pub other_errnos: BTreeMap<i32, u64>,
    /// (kind, reason code) → count, for the kinds that carry a reason.
    reasons: BTreeMap<(ErrorKind, u8), u64>,
}

impl ErrorCounts {
    /// One failure; `detail` is the errno of an [`ErrorKind::Other`], or the reason code
    /// of a [`ErrorKind::ConnackRefused`] or [`ErrorKind::ServerDisconnect`].
    pub fn record(&mut self, kind: ErrorKind, detail: Option<i32>) {
        self.counts[kind as usize] += 1;
        match detail {
            Some(code) if kind.has_reason() => *self.reasons.entry((kind, code as u8)).or_default() += 1,
            Some(errno) => *self.other_errnos.entry(errno).or_default() += 1,
            None => {}
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

    /// `kind key → count` for every kind, zeros included (a stable report shape), and
    /// `kind.reason → count` for each reason seen (`connack_refused.quota_exceeded`).
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        let mut map: BTreeMap<String, u64> =
            ErrorKind::ALL.into_iter().map(|k| (k.key().to_string(), self.get(k))).collect();
        for ((kind, code), n) in &self.reasons {
            *map.entry(format!("{}.{}", kind.key(), reason_name(*code))).or_default() += n;
        }
        map
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

    #[test]
    fn reasons_break_a_kind_down_and_count_once() {
        let mut counts = ErrorCounts::default();
        counts.record(ErrorKind::ConnackRefused, Some(0x97));
        counts.record(ErrorKind::ConnackRefused, Some(0x97));
        counts.record(ErrorKind::ConnackRefused, Some(5));
        counts.record(ErrorKind::ServerDisconnect, Some(0x8E));
        let map = counts.to_map();
        assert_eq!(map["connack_refused"], 3);
        assert_eq!(map["connack_refused.quota_exceeded"], 2);
        assert_eq!(map["connack_refused.not_authorized"], 1);
        assert_eq!(map["server_disconnect.session_taken_over"], 1);
        assert_eq!(error_total(&map), 4);
        assert!(counts.other_errnos.is_empty());
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
