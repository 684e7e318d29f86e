//! MQTT 3.1.1 and 5, the server side, with the codec of [`crate::protocol::mqtt`]:
//! answer CONNECT with CONNACK 0 in the version of the CONNECT (an MQTT 5 CONNACK
//! has reason code 0 and no properties, but an Assigned Client Identifier for a client
//! that sent an empty id, unique per process); return code 1 for a protocol level other
//! than 3.1.1 and 5, then close), PINGREQ with PINGRESP; close on DISCONNECT (with
//! or without MQTT 5's reason code), on EOF, and on anything malformed or out of order. The server closing first after DISCONNECT leaves
//! TIME_WAIT on the server side, as real brokers do. Other packet types are
//! skipped; keep-alive is not enforced. Messages: SUBSCRIBE is answered with SUBACK
//! (the session registers the filters with the process's router), PUBLISH is routed
//! (`router.rs`) and acknowledged (PUBACK; PUBREC, then PUBCOMP for the PUBREL), and a
//! subscriber's PUBREC for a QoS 2 message is answered with PUBREL.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::mqtt::{self, Packet};

use super::exchange::{Replies, Step};
use super::router::ROUTER;
use crate::protocol::mqtt::traffic::{ack, decode_incoming, Incoming};

/// A message packet of a connected client: routed, acknowledged, or its subscription
/// handed to the session (in `replies`) before the SUBACK goes out.
fn on_traffic(packet: Incoming, v5: bool, replies: &mut Replies) -> Step {
    match packet {
        Incoming::Publish { qos, id, topic, payload } => {
            let Ok(topic) = std::str::from_utf8(topic) else { return Step::Close };
            ROUTER.publish(topic, payload, qos);
            match qos {
                1 => replies.push(&ack(4, id)),
                2 => replies.push(&ack(5, id)),
                _ => {}
            }
        }
        Incoming::Subscribe { id, filters } => {
            let mut suback = vec![0x90, 0];
            suback.extend_from_slice(&id.to_be_bytes());
            if v5 {
                suback.push(0);
            }
            for (filter, qos) in filters {
                let Ok(filter) = std::str::from_utf8(filter) else { return Step::Close };
                let granted = qos.min(2);
                replies.subscriptions.push((filter.to_string(), granted));
                suback.push(granted);
            }
            // One byte of remaining length: at most 127 (a SUBSCRIBE of up to ~120 filters).
            match u8::try_from(suback.len() - 2) {
                Ok(len) if len <= 127 => suback[1] = len,
                _ => return Step::Close,
            }
            replies.v5 = v5;
            replies.push(&suback);
        }
        Incoming::PubRel { id } => replies.push(&ack(7, id)),
        Incoming::PubRec { id, .. } => replies.push(&ack(6, id)),
        Incoming::PubAck { .. } | Incoming::PubComp { .. } => {}
        // A server's packets (SUBACK, ...) sent by a client.
        _ => return Step::Close,
    }
    Step::Continue
}

/// Where an MQTT connection is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, waiting for CONNECT.
    AwaitConnect,
    /// CONNACK 0 sent; answering PINGREQs, routing messages until DISCONNECT.
    Connected { v5: bool },
}

/// The server side of one MQTT connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MqttServer {
    phase: Phase,
}

impl MqttServer {
    pub fn new() -> Self {
        MqttServer { phase: Phase::AwaitConnect }
    }

    /// Whether the client's CONNECT is still to come.
    pub fn awaits_connect(&self) -> bool {
        self.phase == Phase::AwaitConnect
    }

    /// Handles every complete packet at the start of `data`, appending the
    /// answers to `replies` and counting CONNACK 0s in `connects`; returns how
    /// many bytes they used.
    pub fn on_packets(&mut self, data: &[u8], replies: &mut Replies, connects: &AtomicU64) -> (usize, Step) {
        if self.phase == Phase::AwaitConnect && data.first().is_some_and(|&b| b != mqtt::CONNECT_HEADER) {
            // Not MQTT at all (or not a client): close without waiting for
            // whatever length the first byte seems to announce.
            return (0, Step::Close);
        }
        let mut used = 0;
        loop {
            if let (Phase::Connected { v5 }, Some(first)) = (self.phase, data.get(used)) {
                if matches!(first >> 4, 3..=8) {
                    match decode_incoming(&data[used..], v5) {
                        Ok(None) => return (used, Step::Continue),
                        Ok(Some((packet, len))) => {
                            used += len;
                            if on_traffic(packet, v5, replies) == Step::Close {
                                return (used, Step::Close);
                            }
                            continue;
                        }
                        Err(_) => return (used, Step::Close),
                    }
                }
            }
            match mqtt::decode(&data[used..]) {
                Ok(None) => return (used, Step::Continue),
                Ok(Some((packet, len))) => {
                    used += len;
                    if self.on_packet(packet, replies, connects) == Step::Close {
                        return (used, Step::Close);
                    }
                }
                // The stream cannot be resynchronised after a malformed packet.
                Err(_) => return (used, Step::Close),
            }
        }
    }

    fn on_packet(&mut self, packet: Packet, replies: &mut Replies, connects: &AtomicU64) -> Step {
        match (self.phase, packet) {
            (Phase::AwaitConnect, Packet::Connect { protocol_level, client_id, .. }) => {
                match protocol_level {
                    mqtt::PROTOCOL_LEVEL => replies.push(&mqtt::connack(false, 0)),
                    mqtt::PROTOCOL_LEVEL_5 if client_id.is_empty() => {
                        // MQTT 5 (§3.2.2.3.7): an empty id is answered with an assigned one.
                        let id = format!("sockcap-assigned-{}", connects.load(Ordering::Relaxed));
                        let mut connack = Vec::with_capacity(8 + id.len());
                        mqtt::encode_connack_v5_assigned(&id, &mut connack);
                        replies.push(&connack);
                    }
                    mqtt::PROTOCOL_LEVEL_5 => replies.push(&mqtt::connack_v5(false, 0)),
                    _ => {
                        // Unacceptable protocol version, then close (MQTT-3.1.2-2).
                        replies.push(&mqtt::connack(false, 1));
                        return Step::Close;
                    }
                }
                connects.fetch_add(1, Ordering::Relaxed);
                self.phase = Phase::Connected { v5: protocol_level == mqtt::PROTOCOL_LEVEL_5 };
                Step::Continue
            }
            (Phase::Connected { .. }, Packet::PingReq) => {
                replies.push(&mqtt::PINGRESP);
                Step::Continue
            }
            (Phase::Connected { .. }, Packet::Other { .. }) => Step::Continue,
            // DISCONNECT; a first packet other than CONNECT; a second CONNECT;
            // a server's packet sent by the client.
            _ => Step::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::embedded::options::ServeSummary;
    use crate::embedded::testing::{
        assert_closed_by_server, assert_still_open, connect_packet, read_exact, TestServer as Server,
    };
    use crate::protocol::Protocol;

    const PATIENCE: Duration = Duration::from_secs(5);

    /// Whether the kernel lists a TIME_WAIT socket from `local` to `remote`
    /// (IPv4 only) in /proc/net/tcp.
    fn in_time_wait(local: SocketAddr, remote: SocketAddr) -> bool {
        let hex = |a: SocketAddr| match a {
            SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
            SocketAddr::V6(_) => unreachable!("IPv4 only"),
        };
        let (local, remote) = (hex(local), hex(remote));
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[1] == local && fields[2] == remote && fields[3] == "06"
        })
    }

    #[tokio::test]
    async fn mqtt_session_connect_ping_disconnect() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        let client_addr = client.local_addr().unwrap();

        client.write_all(&connect_packet("c-1")).await.unwrap();
        assert_eq!(read_exact::<4>(&mut client).await, mqtt::connack(false, 0));
        client.write_all(&mqtt::PINGREQ).await.unwrap();
        assert_eq!(read_exact::<2>(&mut client).await, mqtt::PINGRESP);
        client.write_all(&mqtt::DISCONNECT).await.unwrap();
        assert_closed_by_server(&mut client).await;
        drop(client);

        // The server closed first, so the TIME_WAIT is on its side.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !in_time_wait(server.addr, client_addr) {
            assert!(tokio::time::Instant::now() < deadline, "no server-side TIME_WAIT");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let summary = server.stop().await;
        assert_eq!(summary, ServeSummary { accepted: 1, connects: 1, accept_errors: 0 });
    }

    #[tokio::test]
    async fn mqtt_answers_pipelined_pings_in_order() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        let mut burst = connect_packet("c-2");
        for _ in 0..100 {
            burst.extend_from_slice(&mqtt::PINGREQ);
        }
        client.write_all(&burst).await.unwrap();
        let answers = read_exact::<{ 4 + 100 * 2 }>(&mut client).await;
        assert_eq!(answers[..4], mqtt::connack(false, 0));
        assert!(answers[4..].chunks(2).all(|c| c == mqtt::PINGRESP));
        assert_still_open(&mut client).await;
        server.stop().await;
    }

    #[tokio::test]
    async fn mqtt_closes_when_the_first_packet_is_not_connect() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        client.write_all(&mqtt::PINGREQ).await.unwrap();
        assert_closed_by_server(&mut client).await;
        assert_eq!(server.stop().await.connects, 0);
    }

    #[tokio::test]
    async fn mqtt_closes_on_malformed_input() {
        let server = Server::start(Protocol::Mqtt).await;
        let bad_connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 5];
        for input in [&b"GET / HTTP/1.1\r\n\r\n"[..], &bad_connect] {
            let mut client = server.connect().await;
            client.write_all(input).await.unwrap();
            assert_closed_by_server(&mut client).await;
        }
        assert_eq!(server.stop().await.connects, 0);
    }

    #[tokio::test]
    async fn mqtt_refuses_other_protocol_levels_with_code_1() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        // An MQTT 3.1 CONNECT.
        let v31 = [0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 0];
        client.write_all(&v31).await.unwrap();
        assert_eq!(read_exact::<4>(&mut client).await, mqtt::connack(false, 1));
        assert_closed_by_server(&mut client).await;
        assert_eq!(server.stop().await.connects, 0);
    }

    #[tokio::test]
    async fn mqtt5_session_in_its_own_version_until_disconnect_with_reason() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        let properties = mqtt::ConnectProperties {
            session_expiry_s: Some(0),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        let connect = mqtt::Connect {
            v5: Some(&properties),
            client_id: "c5",
            keep_alive_s: 30,
            clean_session: true,
            username: None,
            password: None,
        };
        let mut packet = Vec::new();
        mqtt::encode_connect(&connect, &mut packet);
        client.write_all(&packet).await.unwrap();
        assert_eq!(read_exact::<5>(&mut client).await, mqtt::connack_v5(false, 0));
        client.write_all(&mqtt::PINGREQ).await.unwrap();
        assert_eq!(read_exact::<2>(&mut client).await, mqtt::PINGRESP);
        assert_still_open(&mut client).await;
        client.write_all(&mqtt::disconnect_v5(0x04)).await.unwrap();
        assert_closed_by_server(&mut client).await;
        assert_eq!(server.stop().await.connects, 1);
    }

    #[tokio::test]
    async fn mqtt_closes_on_peer_eof() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        client.write_all(&connect_packet("c-3")).await.unwrap();
        read_exact::<4>(&mut client).await;
        client.shutdown().await.unwrap();
        assert_closed_by_server(&mut client).await;
        server.stop().await;
    }

    #[tokio::test]
    async fn mqtt5_assigns_an_id_to_a_client_that_sent_none() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut client = server.connect().await;
        let v5 = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 0];
        client.write_all(&v5).await.unwrap();
        let id = b"sockcap-assigned-0";
        let connack = read_exact::<{ 8 + 18 }>(&mut client).await;
        assert_eq!(connack[..8], [0x20, 24, 0, 0, 21, 0x12, 0, 18]);
        assert_eq!(&connack[8..], id);
        assert_still_open(&mut client).await;
        assert_eq!(server.stop().await.connects, 1);
    }
}
