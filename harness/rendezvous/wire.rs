//! What the shards say to each other: JSON lines over TCP ([`Msg`]), and how a shard
//! connects to shard 0 without taking a port the run binds.
//!
//! A connection to shard 0 goes: shard 0 sends [`Msg::Challenge`]; the shard answers
//! [`Msg::Register`] with its [`Member`] and, when it has the run's token, the token's
//! answer to the challenge; shard 0 replies [`Msg::Waiting`] or [`Msg::Refused`], and
//! later [`Msg::Start`] (or `Refused`, when it gives up).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};

use super::member::Member;
use super::token::{Challenge, CHALLENGE_BYTES};

/// What the shards say to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(super) enum Msg {
    /// Shard 0 → a new connection, first: random bytes (hex) to answer with the token.
    Challenge { challenge: String },
    /// Shard i → shard 0: who it is, and HMAC-SHA256(token, challenge) in hex when it has
    /// a token.
    Register {
        #[serde(flatten)]
        member: Member,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<String>,
    },
    /// Shard 0 → shard i: registered, `registered` of `count` are there.
    Waiting { registered: u32, count: u32 },
    /// Shard 0 → every shard: start phase 1 this long after receiving this.
    Start { in_us: u64 },
    /// Shard 0 → shard i: not part of this run (or shard 0 gave up).
    Refused { reason: String },
}

impl Msg {
    pub(super) fn challenge(challenge: &Challenge) -> Msg {
        Msg::Challenge { challenge: hex(&challenge.0) }
    }
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of `text` in hex; `None` if it is not hex of an even length.
pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// A challenge received in hex.
pub(super) fn parse_challenge(text: &str) -> Option<Challenge> {
    let bytes: [u8; CHALLENGE_BYTES] = unhex(text)?.try_into().ok()?;
    Some(Challenge(bytes))
}

pub(super) async fn send(out: &mut OwnedWriteHalf, msg: &Msg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).expect("rendezvous messages serialize");
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

/// Connect to shard 0 from a port bound with SO_REUSEADDR: that port lies in
/// ip_local_port_range, where the run binds its own source ports, and a later bind() may
/// share a port only with sockets that all set it. Without the flag this socket (or its
/// TIME_WAIT) made the run's bind of the same address and port fail with EADDRINUSE
/// (measured: 1 connect in 1,200 in the lab). Bound before connect: a port connect()
/// picks may already be held by other connections (to other destinations) that did not
/// set the flag, which block that bind as well (measured: 3 tests in 5 failed with
/// 8,000 loopback TIME_WAITs left by the test suite); bind() picks a port no socket holds.
pub(super) async fn connect(rendezvous: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(rendezvous).await? {
        let (socket, any) = if addr.is_ipv4() {
            (TcpSocket::new_v4()?, SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)))
        } else {
            (TcpSocket::new_v6()?, SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)))
        };
        socket.set_reuseaddr(true)?;
        socket.bind(any)?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_keeps_the_members_fields_beside_its_answer() {
        let member = Member { index: 1, count: 2, scenario_sha256: "ab".into(), version: "1".into(), host: "h".into() };
        let line =
            serde_json::to_string(&Msg::Register { member: member.clone(), answer: Some("00ff".into()) }).unwrap();
        assert_eq!(
            line,
            r#"{"msg":"register","index":1,"count":2,"scenario_sha256":"ab","version":"1","host":"h","answer":"00ff"}"#
        );
        let Ok(Msg::Register { member: back, answer }) = serde_json::from_str::<Msg>(&line) else { panic!("{line}") };
        assert_eq!((back, answer.as_deref()), (member, Some("00ff")));
        let without = r#"{"msg":"register","index":1,"count":2,"scenario_sha256":"ab","version":"1","host":"h"}"#;
        assert!(matches!(serde_json::from_str::<Msg>(without), Ok(Msg::Register { answer: None, .. })));
    }

    #[test]
    fn hex_round_trips_and_a_challenge_has_32_bytes() {
        let challenge = Challenge([7; CHALLENGE_BYTES]);
        let Msg::Challenge { challenge: text } = Msg::challenge(&challenge) else { unreachable!() };
        assert_eq!(parse_challenge(&text), Some(challenge));
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é0"), None);
        assert_eq!(parse_challenge("00ff"), None);
    }
}
