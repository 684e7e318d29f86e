//! MQTT 3.1.1 and 5, the client side: the CONNECT that opens a session, the CONNACK
//! that accepts or refuses it, PINGREQ as the keep-alive ping, DISCONNECT as the
//! goodbye, and taking whole packets from a held connection's socket (PINGRESP among
//! them, and MQTT 5's DISCONNECT and AUTH from the server).
//!
//! The version is the hello's ([`Connect::v5`](super::Connect)); what the server
//! answers tells its own by its layout, so nothing else here depends on it. The goodbye
//! is the same two bytes in both versions: an MQTT 5 DISCONNECT of remaining length 0
//! is reason code 0x00, normal disconnection, without properties (MQTT 5 §3.14.2.1).
//! MQTT 5's Assigned Client Identifier is read but not kept: a server assigns one only
//! to a client that sends none (`client_id = ""`), and such a client has nothing to do
//! with it during the session. A reconnect sends an empty id again and gets a new one:
//! reusing the old would resume its session only with a session expiry, and would cost
//! every held connection the id's bytes.

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{decode, encode_connect, packet_bounds, Packet, DISCONNECT, PINGREQ};
use crate::protocol::session::{Answer, Hello, Readout};
use crate::socket;

/// The keep-alive ping.
pub const PING: &[u8] = &PINGREQ;

/// The polite goodbye.
pub const GOODBYE: &[u8] = &DISCONNECT;

/// Appends the CONNECT that opens a session.
pub fn hello(hello: &Hello, out: &mut Vec<u8>) {
    out.reserve(32 + hello.client_id.len() + if hello.v5.is_some() { 16 } else { 0 });
    encode_connect(hello, out);
}

/// Whether the bytes received since the CONNECT hold the CONNACK, and what it says.
pub fn answer(received: &[u8]) -> Answer {
    match decode(received) {
        Ok(None) => Answer::Incomplete,
        Ok(Some((Packet::ConnAck { code: 0, properties, .. }, _))) => {
            Answer::Accepted { server_keep_alive_s: properties.and_then(|p| p.server_keep_alive_s) }
        }
        Ok(Some((Packet::ConnAck { code, .. }, _))) => Answer::Refused { code },
        _ => Answer::Unexpected,
    }
}

/// How far the bytes at the head of the receive queue go in whole packets.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// The bytes of the whole packets the head starts with.
    whole: usize,
    /// A PINGRESP among them.
    pong: bool,
    /// The first DISCONNECT or AUTH among them: the last packet taken.
    end: Option<End>,
    /// What follows them.
    rest: Rest,
}

/// A packet from the server that ends the session (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Disconnect(u8),
    Auth(u8),
}

#[derive(Debug, PartialEq, Eq)]
enum Rest {
    /// Nothing: the whole packets were all there was.
    Empty,
    /// A packet not whole yet, of this length once its fixed header is in.
    Partial(Option<usize>),
    /// Bytes that are not MQTT.
    Malformed,
}

/// For the fuzz target `mqtt_client` (`fuzz/`): what [`receive`] makes of the bytes at
/// the head of a receive queue: the bytes of the whole packets it starts with, and
/// whether a PINGRESP was among them.
#[doc(hidden)]
pub fn scan_head(head: &[u8]) -> (usize, bool) {
    let scan = scan(head);
    (scan.whole, scan.pong)
}

/// Whether a PINGRESP is among the whole packets `plaintext` starts with (a TLS
/// connection's read: rustls is its reassembly buffer, and a broker sends a PINGRESP in
/// one record).
pub fn pong_in(plaintext: &[u8]) -> bool {
    scan(plaintext).pong
}

fn scan(head: &[u8]) -> Scan {
    let (mut whole, mut pong) = (0, false);
    loop {
        let rest = &head[whole..];
        match decode(rest) {
            Ok(Some((packet, used))) => {
                pong |= packet == Packet::PingResp;
                whole += used;
                let end = match packet {
                    Packet::Disconnect { reason } => End::Disconnect(reason),
                    Packet::Auth { reason } => End::Auth(reason),
                    _ => continue,
                };
                // Nothing after it matters: the session is over.
                return Scan { whole, pong, end: Some(end), rest: Rest::Empty };
            }
            Ok(None) if rest.is_empty() => return Scan { whole, pong, end: None, rest: Rest::Empty },
            Ok(None) => {
                let len = packet_bounds(rest).ok().flatten().map(|(_, end)| end);
                return Scan { whole, pong, end: None, rest: Rest::Partial(len) };
            }
            Err(_) => return Scan { whole, pong, end: None, rest: Rest::Malformed },
        }
    }
}

/// Take the whole packets at the head of a held connection's receive queue, without
/// blocking; `Data { pong }` says whether a PINGRESP was among them, `Disconnected` and
/// `Auth` that the server ended the session (MQTT 5).
///
/// The kernel's receive queue is the reassembly buffer. Its head is peeked into a
/// 64-byte stack array and only whole packets are taken from the queue, so a packet
/// split across segments (a PINGRESP's two bytes included) stays queued until it is
/// whole and is never read from its middle; nothing is kept between calls, so nothing
/// is held across the hold loop's idle await. While the head is a packet not whole yet,
/// the socket's readiness is cleared and the rest's arrival wakes the task again.
/// Three heads are discarded instead:
/// - a packet longer than the array (never a PINGRESP, the one packet a broker sends an
///   idle client of ours), once all of it is queued;
/// - the start of a packet the target will never finish: its FIN has come;
/// - bytes that are not MQTT, as they come: the stream cannot be resynchronised, and a
///   held connection ignores what it does not expect.
pub fn receive(stream: &TcpStream) -> Readout {
    let mut head = [0u8; 64];
    let taken = stream.try_io(Interest::READABLE, || {
        let n = socket::receive(stream, &mut head, true)?;
        if n == 0 {
            return Ok(None);
        }
        let scan = scan(&head[..n]);
        let take = match scan.rest {
            _ if scan.whole > 0 => scan.whole,
            Rest::Malformed => n,
            _ if socket::peer_shut_down(stream) => n,
            Rest::Partial(Some(len)) if len > head.len() && socket::queued_bytes(stream)? >= len => len,
            Rest::Partial(_) | Rest::Empty => 0,
        };
        if take == 0 {
            // Clears the readiness: the rest of the packet wakes the task.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        discard(stream, take, &mut head)?;
        Ok(Some((scan.pong, scan.end)))
    });
    match taken {
        Ok(None) => Readout::Eof,
        Ok(Some((_, Some(End::Disconnect(reason))))) => Readout::Disconnected { reason },
        Ok(Some((_, Some(End::Auth(reason))))) => Readout::Auth { reason },
        Ok(Some((pong, None))) => Readout::Data { pong },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Readout::Nothing,
        Err(e) => Readout::Failed(e),
    }
}

/// Take `len` bytes, all known to be queued, from the receive queue through `scratch`.
fn discard(stream: &TcpStream, mut len: usize, scratch: &mut [u8]) -> io::Result<()> {
    while len > 0 {
        let chunk = len.min(scratch.len());
        match socket::receive(stream, &mut scratch[..chunk], false)? {
            0 => break,
            n => len -= n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::protocol::mqtt::{connack, connack_v5, disconnect_v5, PINGRESP};

    #[test]
    fn the_answer_is_the_connack() {
        assert_eq!(answer(&connack(false, 0)), Answer::Accepted { server_keep_alive_s: None });
        assert_eq!(answer(&connack(true, 5)), Answer::Refused { code: 5 });
        assert_eq!(answer(&connack_v5(false, 0x97)), Answer::Refused { code: 0x97 });
        // MQTT 5 CONNACK 0 with Server Keep Alive 5 and Assigned Client Identifier "a".
        let v5 = [0x20, 10, 0, 0, 7, 0x13, 0, 5, 0x12, 0, 1, b'a'];
        assert_eq!(answer(&v5), Answer::Accepted { server_keep_alive_s: Some(5) });
        assert_eq!(answer(&connack(false, 0)[..3]), Answer::Incomplete);
        assert_eq!(answer(&PINGRESP), Answer::Unexpected);
        assert_eq!(answer(&[0x00, 0x00]), Answer::Unexpected);
    }

    #[test]
    fn a_scan_stops_at_a_packet_not_whole_yet() {
        assert_eq!(scan(&PINGRESP), Scan { whole: 2, pong: true, end: None, rest: Rest::Empty });
        assert_eq!(scan(&PINGRESP[..1]), Scan { whole: 0, pong: false, end: None, rest: Rest::Partial(None) });
        // PINGRESP, then the first 3 bytes of a 7-byte PUBLISH.
        let head = [0xD0, 0, 0x30, 5, 0];
        assert_eq!(scan(&head), Scan { whole: 2, pong: true, end: None, rest: Rest::Partial(Some(7)) });
        // A PUBLISH, then a PINGRESP's first byte: the PUBLISH's payload is not read as one.
        let head = [0x30, 4, 0, 1, b'a', 0xD0, 0xD0];
        assert_eq!(scan(&head), Scan { whole: 6, pong: false, end: None, rest: Rest::Partial(None) });
        assert_eq!(scan(&[0x00, 0]).rest, Rest::Malformed);
    }

    #[test]
    fn a_scan_ends_at_the_servers_disconnect_or_auth() {
        let mut head = PINGRESP.to_vec();
        head.extend_from_slice(&disconnect_v5(0x8E));
        head.extend_from_slice(&PINGRESP);
        let scan = scan(&head);
        assert_eq!((scan.whole, scan.pong, scan.end), (5, true, Some(End::Disconnect(0x8E))));
        assert_eq!(super::scan(&[0xF0, 0]).end, Some(End::Auth(0)));
        assert_eq!(super::scan(&[0xE0, 0]).end, Some(End::Disconnect(0)));
    }

    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// Wait until the client's receive queue holds `len` bytes, then take what it can.
    async fn receive_queued(client: &TcpStream, len: usize) -> Readout {
        while socket::queued_bytes(client).unwrap() < len && !socket::peer_shut_down(client) {
            tokio::task::yield_now().await;
        }
        client.readable().await.unwrap();
        receive(client)
    }

    #[tokio::test]
    async fn a_pingresp_split_across_segments_is_taken_once_whole() {
        let (client, mut server) = connected_pair().await;
        server.write_all(&PINGRESP[..1]).await.unwrap();
        assert!(matches!(receive_queued(&client, 1).await, Readout::Nothing));
        assert_eq!(socket::queued_bytes(&client).unwrap(), 1, "the half packet stays queued");
        server.write_all(&PINGRESP[1..]).await.unwrap();
        assert!(matches!(receive_queued(&client, 2).await, Readout::Data { pong: true }));
        assert_eq!(socket::queued_bytes(&client).unwrap(), 0);
    }

    #[tokio::test]
    async fn a_packet_longer_than_the_buffer_is_skipped_whole() {
        let (client, mut server) = connected_pair().await;
        // A PUBLISH of 200 bytes whose payload is full of PINGRESP look-alikes, then a PINGRESP.
        let mut publish = vec![0x30, 197, 1, 0, 1, b'a'];
        publish.extend(std::iter::repeat_n([0xD0, 0], 97).flatten());
        assert_eq!(publish.len(), 200);
        server.write_all(&publish[..100]).await.unwrap();
        assert!(matches!(receive_queued(&client, 100).await, Readout::Nothing));
        server.write_all(&publish[100..]).await.unwrap();
        assert!(matches!(receive_queued(&client, 200).await, Readout::Data { pong: false }));
        server.write_all(&PINGRESP).await.unwrap();
        assert!(matches!(receive_queued(&client, 2).await, Readout::Data { pong: true }));
    }

    #[tokio::test]
    async fn a_packet_cut_by_the_targets_close_is_dropped_then_eof() {
        let (client, mut server) = connected_pair().await;
        server.write_all(&PINGRESP[..1]).await.unwrap();
        drop(server);
        while !socket::peer_shut_down(&client) {
            tokio::task::yield_now().await;
        }
        assert!(matches!(receive_queued(&client, 1).await, Readout::Data { pong: false }));
        assert!(matches!(receive_queued(&client, 0).await, Readout::Eof));
    }
}
