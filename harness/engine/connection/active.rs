//! A held MQTT connection that takes part in traffic: subscribed, publishing, or both.
//! Its first [`TrafficOrder`] moves it here from the idle hold loop for the rest of
//! its life: it keeps a read buffer and its publishing state (boxed, outside the idle
//! connection's future), reads whole packets (SUBACK, PUBLISH, PUBACK, PUBREC, PUBREL,
//! PUBCOMP, PINGRESP, DISCONNECT), answers what MQTT asks of it, publishes its messages
//! at their scheduled instants (open loop: late ones go at once, their latency counted
//! from when they were due) and still obeys the bell (stop, close, keep-alive, the
//! next phase's order).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::close::close_held;
use super::links::{micros_since, Event, Links};
use super::order::{messages_of, Traffic, TrafficEvent, TrafficOrder};
use crate::engine::messages::unix_us_now;
use crate::engine::worker::held::Rings;
use crate::failure::ErrorKind;
use crate::protocol::mqtt::traffic::{ack, decode_incoming, encode_publish, encode_subscribe, Incoming, Stamp};
use crate::protocol::mqtt::{MAX_PACKET_LEN, PINGREQ};

/// A SUBSCRIBE awaiting its SUBACK.
struct Pending {
    id: u16,
    sent: Instant,
    deadline: Instant,
}

/// A message awaiting its PUBACK (QoS 1) or PUBCOMP (QoS 2).
struct Unacked {
    id: u16,
    scheduled: Instant,
}

/// A publisher's progress through its share of a publish order.
struct Publishing {
    order: Arc<TrafficOrder>,
    /// Its place among the phase's publishers, its message count.
    j: u64,
    total: u64,
    /// The next message to send.
    k: u64,
    topic: String,
    /// Deliveries each message calls for.
    expected: u64,
    unacked: Vec<Unacked>,
}

impl Publishing {
    fn plan(&self) -> (&crate::plan::traffic::PublishPlan, u64) {
        match &self.order.what {
            Traffic::Publish { plan, publishers, .. } => (plan, *publishers),
            Traffic::Subscribe(_) => unreachable!("a publishing state is made from a publish order"),
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let (plan, publishers) = self.plan();
        (self.k < self.total && self.unacked.len() < plan.max_inflight)
            .then(|| self.order.scheduled(plan, publishers, self.j, self.k))
    }

    fn ack_deadline(&self) -> Option<Instant> {
        self.unacked.first().map(|u| u.scheduled + self.plan().0.timeout)
    }
}

/// What woke the active connection.
enum Wake {
    Bell(Rings),
    Readable(io::Result<()>),
    Timer,
}

/// Run traffic until the run's end, the worker's close order or the connection's loss
/// (then as [`hold`](super::hold::hold) returns: the lost socket's local address).
pub(super) async fn active(stream: TcpStream, links: &Links) -> Option<Option<SocketAddr>> {
    let mut pending: Option<Pending> = None;
    let mut publishing: Option<Publishing> = None;
    let end = run(stream, links, &mut pending, &mut publishing).await;
    // Ended with work under way (lost, closed, stopped): its outcome still goes to the
    // worker, which waits for one per connection it rang.
    if pending.is_some() {
        links.send(Event::Traffic(TrafficEvent::SubscribeTimedOut));
    }
    if let Some(p) = publishing {
        for _ in &p.unacked {
            links.send(Event::Traffic(TrafficEvent::AckTimedOut));
        }
        if p.total > p.k {
            links.send(Event::Traffic(TrafficEvent::Unsent { count: p.total - p.k }));
        }
        links.send(Event::Traffic(TrafficEvent::PublisherDone));
    }
    end
}

async fn run(
    mut stream: TcpStream,
    links: &Links,
    pending: &mut Option<Pending>,
    publishing: &mut Option<Publishing>,
) -> Option<Option<SocketAddr>> {
    let n = links.bell.number();
    let v5 = links.spec.mqtt.v5.is_some();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::new();
    let mut done_phase: Option<usize> = None;
    let mut awaiting_pong = false;
    let mut next_id: u16 = 0;
    let mut id = move || {
        next_id = next_id.checked_add(1).unwrap_or(1);
        next_id
    };
    loop {
        let now = Instant::now();
        // Orders first: a new phase's subscribe or publish.
        if links.bell.take_traffic() {
            let order = links.spec.traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(order) = order.filter(|o| done_phase != Some(o.phase)) {
                done_phase = Some(order.phase);
                match &order.what {
                    Traffic::Subscribe(plan) => match plan.topic.render(n) {
                        Some(filter) => {
                            let pid = id();
                            encode_subscribe(pid, &filter, plan.qos, v5, &mut out);
                            *pending = Some(Pending { id: pid, sent: now, deadline: now + plan.timeout });
                        }
                        None => links.send(Event::Traffic(TrafficEvent::SubscribeRefused { code: 0x8F })),
                    },
                    Traffic::Publish { plan, publishers, fanout } => {
                        let j = n.saturating_sub(plan.clients.from);
                        let topic = plan.topic.render(n);
                        let expected = topic.as_deref().map_or(0, |t| fanout.of_topic(t));
                        let total = messages_of(plan.count, *publishers, j);
                        if topic.is_none() && total > 0 {
                            // `{n - K}` below zero (a share of clients starting too low).
                            links.send(Event::Traffic(TrafficEvent::Unsent { count: total }));
                        }
                        let topic = topic.unwrap_or_default();
                        if total == 0 || topic.is_empty() {
                            links.send(Event::Traffic(TrafficEvent::PublisherDone));
                        } else {
                            *publishing = Some(Publishing {
                                order: order.clone(),
                                j,
                                total,
                                k: 0,
                                topic,
                                expected,
                                unacked: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
        // Messages due now (late ones too), within the in-flight bound.
        if let Some(p) = publishing.as_mut() {
            while p.next_due().is_some_and(|due| due <= now) {
                let (plan, publishers) = p.plan();
                let (qos, size) = (plan.qos, plan.size);
                let scheduled = p.order.scheduled(plan, publishers, p.j, p.k);
                let late_us = now.saturating_duration_since(scheduled).as_micros() as u64;
                let stamp = Stamp { publisher: n, seq: p.k, sent_unix_us: unix_us_now().saturating_sub(late_us) };
                let pid = if qos > 0 { id() } else { 0 };
                encode_publish(&p.topic, qos, pid, v5, &stamp, size, &mut out);
                if qos > 0 {
                    p.unacked.push(Unacked { id: pid, scheduled });
                }
                p.k += 1;
                links.send(Event::Traffic(TrafficEvent::Published { expected: p.expected }));
            }
            // Acknowledgements that never came.
            let timeout = p.plan().0.timeout;
            let before = p.unacked.len();
            p.unacked.retain(|u| u.scheduled + timeout > now);
            for _ in p.unacked.len()..before {
                links.send(Event::Traffic(TrafficEvent::AckTimedOut));
            }
        }
        if publishing.as_ref().is_some_and(|p| p.k >= p.total && p.unacked.is_empty()) {
            *publishing = None;
            links.send(Event::Traffic(TrafficEvent::PublisherDone));
        }
        if pending.as_ref().is_some_and(|p| p.deadline <= now) {
            *pending = None;
            links.send(Event::Traffic(TrafficEvent::SubscribeTimedOut));
        }
        if !out.is_empty() {
            let deadline = now + links.spec.keep_alive().max(std::time::Duration::from_secs(10));
            match timeout_at(deadline, stream.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => return lost(links, &stream, &e),
                Err(_) => return lost(links, &stream, &io::Error::from(io::ErrorKind::TimedOut)),
            }
        }
        let timer = [
            publishing.as_ref().and_then(Publishing::next_due),
            publishing.as_ref().and_then(Publishing::ack_deadline),
            pending.as_ref().map(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min();
        let wake = tokio::select! {
            biased;
            rings = std::future::poll_fn(|cx| {
                let rings = links.bell.poll(cx);
                if rings.stop || rings.close.is_some() || rings.ping || rings.traffic {
                    Poll::Ready(rings)
                } else {
                    Poll::Pending
                }
            }) => Wake::Bell(rings),
            ready = stream.readable() => Wake::Readable(ready),
            _ = sleep_until(timer.unwrap_or(now)), if timer.is_some() => Wake::Timer,
        };
        match wake {
            Wake::Timer => {}
            Wake::Readable(Err(e)) => return lost(links, &stream, &e),
            Wake::Readable(Ok(())) => {
                if buf.capacity() - buf.len() < 2048 {
                    buf.reserve(buf.len().clamp(4096, MAX_PACKET_LEN));
                }
                let spare = buf.capacity() - buf.len();
                let at = buf.len();
                buf.resize(at + spare, 0);
                match stream.try_read(&mut buf[at..]) {
                    Ok(0) => {
                        links.send(Event::Lost { kind: ErrorKind::ClosedByPeer, errno: None });
                        return Some(stream.local_addr().ok());
                    }
                    Ok(read) => buf.truncate(at + read),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        buf.truncate(at);
                        continue;
                    }
                    Err(e) => return lost(links, &stream, &e),
                }
                let mut used = 0;
                loop {
                    let packet = match decode_incoming(&buf[used..], v5) {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(e) => return lost(links, &stream, &io::Error::new(io::ErrorKind::InvalidData, e)),
                    };
                    used += packet.1;
                    match packet.0 {
                        Incoming::SubAck { id, code } if pending.as_ref().is_some_and(|p| p.id == id) => {
                            let sent = pending.take().map_or(Instant::now(), |p| p.sent);
                            links.send(Event::Traffic(match code {
                                0..=2 => TrafficEvent::Subscribed { us: micros_since(sent) },
                                code => TrafficEvent::SubscribeRefused { code },
                            }));
                        }
                        Incoming::Publish { qos, id, payload, .. } => {
                            links.send(Event::Traffic(match Stamp::read(payload) {
                                Some(s) => TrafficEvent::Delivered {
                                    subscriber: n,
                                    publisher: s.publisher,
                                    seq: s.seq,
                                    latency_us: unix_us_now().saturating_sub(s.sent_unix_us),
                                },
                                None => TrafficEvent::Foreign,
                            }));
                            match qos {
                                1 => out.extend_from_slice(&ack(4, id)),
                                2 => out.extend_from_slice(&ack(5, id)),
                                _ => {}
                            }
                        }
                        Incoming::PubAck { id, code } | Incoming::PubComp { id, code } => {
                            acknowledged(publishing.as_mut(), links, id, code);
                        }
                        Incoming::PubRec { id, code } if code >= 0x80 => {
                            acknowledged(publishing.as_mut(), links, id, code);
                        }
                        Incoming::PubRec { id, .. } => out.extend_from_slice(&ack(6, id)),
                        Incoming::PubRel { id } => out.extend_from_slice(&ack(7, id)),
                        Incoming::PingResp => awaiting_pong = false,
                        Incoming::Disconnect { reason } => {
                            let errno = Some(i32::from(reason));
                            links.send(Event::Lost { kind: ErrorKind::ServerDisconnect, errno });
                            return Some(stream.local_addr().ok());
                        }
                        Incoming::SubAck { .. } | Incoming::Subscribe { .. } | Incoming::Other => {}
                    }
                }
                buf.drain(..used);
            }
            Wake::Bell(rings) => {
                if rings.stop {
                    return None;
                }
                if let Some(cmd) = rings.close {
                    Box::pin(close_held(crate::transport::Stream::Tcp(stream), cmd, links)).await;
                    return None;
                }
                if rings.ping {
                    if awaiting_pong {
                        links.send(Event::Lost { kind: ErrorKind::PingTimeout, errno: None });
                        return Some(stream.local_addr().ok());
                    }
                    out.extend_from_slice(&PINGREQ);
                    awaiting_pong = true;
                    links.bell.pinged(links.spec.keep_alive());
                }
            }
        }
    }
}

/// A traffic order rung on a connection that cannot carry it (the target closed it and
/// it is kept open, `on_eof = "hold"`): its outcome at once, so the phase does not wait.
pub(super) fn cannot_carry(links: &Links) {
    if !links.bell.take_traffic() {
        return;
    }
    let order = links.spec.traffic.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match order.as_deref().map(|o| &o.what) {
        Some(Traffic::Subscribe(_)) => links.send(Event::Traffic(TrafficEvent::SubscribeTimedOut)),
        Some(Traffic::Publish { .. }) => links.send(Event::Traffic(TrafficEvent::PublisherDone)),
        None => {}
    }
}

/// The acknowledgement of message `id` came: its latency, or its refusal.
fn acknowledged(publishing: Option<&mut Publishing>, links: &Links, id: u16, code: u8) {
    let Some(p) = publishing else { return };
    let Some(at) = p.unacked.iter().position(|u| u.id == id) else { return };
    let unacked = p.unacked.remove(at);
    let qos = p.plan().0.qos;
    links.send(Event::Traffic(match code {
        0..=0x7F => TrafficEvent::Acknowledged { us: micros_since(unacked.scheduled), qos },
        code => TrafficEvent::PublishRefused { code },
    }));
}

fn lost(links: &Links, stream: &TcpStream, e: &io::Error) -> Option<Option<SocketAddr>> {
    links.lost(e);
    Some(stream.local_addr().ok())
}
