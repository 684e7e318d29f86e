//! One connection of the embedded target: its lifecycle ([`Phase`], [`Input`])
//! and the protocol it speaks.
//!
//! - `tcp`: hold the connection, discard what arrives, close on the peer's FIN.
//! - `mqtt`: answer CONNECT with CONNACK 0 (1 for a protocol level other than
//!   3.1.1, then close), PINGREQ with PINGRESP; close on DISCONNECT, on EOF, and
//!   on anything malformed or out of order. The server closing first after
//!   DISCONNECT leaves TIME_WAIT on the server side, as real brokers do.
//!   Other packet types are skipped; keep-alive is not enforced.
//!
//! Two misbehaviours serve the TCP state recipes ([`ServeOptions`]):
//! - `read: false`: stop reading (`tcp`: at once; `mqtt`: once CONNACK is
//!   sent), so the client's data fills the receive window. The task then waits
//!   only for shutdown and its timer; it never polls the socket again.
//! - `shutdown_after`: a timer, armed at accept, that shuts down the write side
//!   (FIN first) and keeps the socket.
//!
//! Memory: an idle connection owns its socket, its state and two empty `Vec`s,
//! nothing else (plus a boxed timer with `shutdown_after`). It waits on
//! readiness, then reads into a stack buffer inside a synchronous step that no
//! `.await` crosses, so no read buffer lives in the task. Bytes are kept only
//! while a packet is split across reads, and replies only while the socket's
//! send buffer is full.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::protocol::mqtt::{self, Packet};
use crate::protocol::Protocol;

use super::ServeOptions;
use crate::protocol::OnEof;

/// Bytes read per readiness event.
const READ_CHUNK: usize = 2048;

/// Reply bytes gathered on the stack per read before they spill into a `Vec`.
const REPLY_STACK: usize = 64;

/// Serves one accepted connection until the protocol closes it, the peer goes
/// away, or `shutdown` is cancelled. Returning drops (closes) the socket.
/// Uses `opts.protocol`, `on_eof`, `read` and `shutdown_after`; call it in the
/// runtime, at accept: the `shutdown_after` delay starts here.
///
/// An `async` block rather than an `async fn`: a block uses its captures in
/// place, where an `async fn` would store each argument twice.
pub(super) fn run(
    stream: TcpStream,
    opts: &ServeOptions,
    shutdown: CancellationToken,
    connects: Arc<AtomicU64>,
) -> impl Future<Output = ()> + Send {
    let mut conn = Connection::new(opts.protocol, opts.read, connects);
    let on_eof = opts.on_eof;
    // Boxed, and only when asked for: a timer is larger than the rest of the task.
    let mut half_close = opts.shutdown_after.map(|delay| Box::pin(tokio::time::sleep(delay)));
    async move {
        // Replies must not wait for an ACK (Nagle): they are what clients time.
        // Best effort: a socket that refuses the option fails its next read anyway.
        let _ = stream.set_nodelay(true);
        // One registration for the connection's life, not one per wake-up.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // One await point for everything keeps the task small. While replies
            // are pending nothing more is read: backpressure. A connection that
            // no longer reads leaves the socket alone (it would stay readable).
            let interest = conn.interest();
            let event = tokio::select! {
                biased;
                () = &mut cancelled => return,
                () = elapsed(&mut half_close) => Event::HalfClose,
                ready = stream.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => {
                    Event::Ready(ready.is_ok())
                }
            };
            let step = match event {
                Event::HalfClose => {
                    half_close = None;
                    conn.half_close(&stream)
                }
                Event::Ready(false) => Step::Close,
                Event::Ready(true) if interest == Some(Interest::WRITABLE) => conn.flush(&stream),
                Event::Ready(true) => conn.on_readable(&stream),
            };
            match step {
                Step::Continue => {}
                Step::Close => return,
                // Stop reading; wait for shutdown (and the timer, if armed).
                Step::Eof if on_eof == OnEof::Hold => conn.input = Input::Eof,
                Step::Eof => return,
            }
        }
    }
}

/// What woke a connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The `shutdown_after` timer fired.
    HalfClose,
    /// The socket is ready for the awaited direction (`false`: it failed).
    Ready(bool),
}

/// Completes when the timer does; never without one. A `poll_fn` holds only
/// the borrow, where an `async fn` would also hold its own state.
fn elapsed(timer: &mut Option<Pin<Box<Sleep>>>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match timer {
        Some(sleep) => sleep.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// Where a connection is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `tcp`: held, input discarded.
    Raw,
    /// `mqtt`: accepted, waiting for CONNECT.
    AwaitConnect,
    /// `mqtt`: CONNACK 0 sent; answering PINGREQs until DISCONNECT.
    Connected,
}

/// Whether a connection still reads what its peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Reading (for `mqtt` with `read: false`: until CONNACK is sent).
    Open,
    /// Never reading (again): the peer's data fills the receive window.
    Ignored,
    /// The peer's FIN arrived and the connection holds its end.
    Eof,
}

/// What the connection does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    /// Close the socket (return from [`run`]).
    Close,
    /// The peer's FIN arrived: close or hold, as [`OnEof`] says.
    Eof,
}

/// The state of one connection between reads.
#[derive(Debug)]
struct Connection {
    phase: Phase,
    input: Input,
    /// Whether to keep reading once the protocol handshake is done (`read`).
    keep_reading: bool,
    /// The start of a packet split across reads; empty and unallocated otherwise.
    partial: Vec<u8>,
    /// Replies the socket has not taken yet; empty and unallocated otherwise.
    unsent: Vec<u8>,
    /// The server-wide count of CONNECTs answered with CONNACK 0.
    connects: Arc<AtomicU64>,
}

impl Connection {
    fn new(protocol: Protocol, read: bool, connects: Arc<AtomicU64>) -> Self {
        let phase = match protocol {
            Protocol::Tcp => Phase::Raw,
            Protocol::Mqtt => Phase::AwaitConnect,
        };
        let mut conn = Connection {
            phase,
            input: Input::Open,
            keep_reading: read,
            partial: Vec::new(),
            unsent: Vec::new(),
            connects,
        };
        conn.stop_reading_if_done();
        conn
    }

    /// What to wait for on the socket: writability while replies are pending,
    /// else readability while reading, else nothing.
    fn interest(&self) -> Option<Interest> {
        if !self.unsent.is_empty() {
            Some(Interest::WRITABLE)
        } else if self.input == Input::Open {
            Some(Interest::READABLE)
        } else {
            None
        }
    }

    /// With `read: false`, stops reading once the handshake (if any) is done.
    fn stop_reading_if_done(&mut self) {
        if !self.keep_reading && self.input == Input::Open && self.phase != Phase::AwaitConnect {
            self.input = Input::Ignored;
            // Bytes pipelined after CONNECT will never be parsed.
            self.partial = Vec::new();
        }
    }

    /// Shuts the write side down (our FIN goes out after what the socket already
    /// holds) and drops replies it has not taken: they could not be sent anymore.
    fn half_close(&mut self, stream: &TcpStream) -> Step {
        self.unsent = Vec::new();
        match SockRef::from(stream).shutdown(Shutdown::Write) {
            Ok(()) => Step::Continue,
            Err(_) => Step::Close,
        }
    }

    /// Reads what the socket has, once, and answers it.
    fn on_readable(&mut self, stream: &TcpStream) -> Step {
        let mut chunk = [0u8; READ_CHUNK];
        match stream.try_read(&mut chunk) {
            Ok(0) => Step::Eof,
            Ok(n) => {
                let mut replies = Replies::new();
                let step = self.on_bytes(&chunk[..n], &mut replies);
                self.stop_reading_if_done();
                match self.send(stream, replies.as_slice()) {
                    Step::Continue => step,
                    Step::Close | Step::Eof => Step::Close,
                }
            }
            Err(e) if is_transient(&e) => Step::Continue,
            Err(_) => Step::Close,
        }
    }

    /// Handles received bytes, appending the answers to `replies`.
    fn on_bytes(&mut self, bytes: &[u8], replies: &mut Replies) -> Step {
        if self.phase == Phase::Raw {
            return Step::Continue;
        }
        if self.partial.is_empty() {
            let (used, step) = self.on_packets(bytes, replies);
            if step == Step::Continue {
                self.partial.extend_from_slice(&bytes[used..]);
            }
            return step;
        }
        let mut pending = std::mem::take(&mut self.partial);
        pending.extend_from_slice(bytes);
        let (used, step) = self.on_packets(&pending, replies);
        pending.drain(..used);
        if !pending.is_empty() {
            self.partial = pending;
        }
        step
    }

    /// Handles every complete packet at the start of `data`; returns how many
    /// bytes they used.
    fn on_packets(&mut self, data: &[u8], replies: &mut Replies) -> (usize, Step) {
        if self.phase == Phase::AwaitConnect && data.first().is_some_and(|&b| b != mqtt::CONNECT_HEADER) {
            // Not MQTT at all (or not a client): close without waiting for
            // whatever length the first byte seems to announce.
            return (0, Step::Close);
        }
        let mut used = 0;
        loop {
            match mqtt::decode(&data[used..]) {
                Ok(None) => return (used, Step::Continue),
                Ok(Some((packet, len))) => {
                    used += len;
                    if self.on_packet(packet, replies) == Step::Close {
                        return (used, Step::Close);
                    }
                }
                // The stream cannot be resynchronised after a malformed packet.
                Err(_) => return (used, Step::Close),
            }
        }
    }

    fn on_packet(&mut self, packet: Packet, replies: &mut Replies) -> Step {
        match (self.phase, packet) {
            (Phase::AwaitConnect, Packet::Connect { protocol_level, .. }) => {
                if protocol_level != mqtt::PROTOCOL_LEVEL {
                    // Unacceptable protocol version, then close (MQTT-3.1.2-2).
                    replies.push(&mqtt::connack(false, 1));
                    return Step::Close;
                }
                replies.push(&mqtt::connack(false, 0));
                self.connects.fetch_add(1, Ordering::Relaxed);
                self.phase = Phase::Connected;
                Step::Continue
            }
            (Phase::Connected, Packet::PingReq) => {
                replies.push(&mqtt::PINGRESP);
                Step::Continue
            }
            (Phase::Connected, Packet::Other { .. }) | (Phase::Raw, _) => Step::Continue,
            // DISCONNECT; a first packet other than CONNECT; a second CONNECT;
            // a server's packet sent by the client.
            _ => Step::Close,
        }
    }

    /// Writes `bytes` as far as the socket takes them and keeps the rest.
    fn send(&mut self, stream: &TcpStream, bytes: &[u8]) -> Step {
        if bytes.is_empty() {
            return Step::Continue;
        }
        match write_some(stream, bytes) {
            Ok(written) => {
                self.unsent.extend_from_slice(&bytes[written..]);
                Step::Continue
            }
            Err(_) => Step::Close,
        }
    }

    /// Writes kept replies once the socket is writable again.
    fn flush(&mut self, stream: &TcpStream) -> Step {
        match write_some(stream, &self.unsent) {
            Ok(written) => {
                self.unsent.drain(..written);
                if self.unsent.is_empty() {
                    self.unsent = Vec::new();
                }
                Step::Continue
            }
            Err(_) => Step::Close,
        }
    }
}

/// Writes as much of `bytes` as the socket takes without blocking.
fn write_some(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.try_write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Errors after which the socket is still usable: a spurious wake-up or a
/// signal.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// The replies to one read: on the stack, spilling into a `Vec` only for a
/// long burst of pipelined requests.
struct Replies {
    stack: [u8; REPLY_STACK],
    len: usize,
    spill: Vec<u8>,
}

impl Replies {
    fn new() -> Self {
        Replies { stack: [0; REPLY_STACK], len: 0, spill: Vec::new() }
    }

    fn push(&mut self, reply: &[u8]) {
        if self.spill.is_empty() && self.len + reply.len() <= REPLY_STACK {
            self.stack[self.len..self.len + reply.len()].copy_from_slice(reply);
            self.len += reply.len();
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.stack[..self.len]);
        }
        self.spill.extend_from_slice(reply);
    }

    fn as_slice(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.spill
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::embedded::{ServeOptions, ServeSummary};

    const PATIENCE: Duration = Duration::from_secs(5);

    use crate::embedded::testing::TestServer as Server;

    fn connect_packet(client_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let connect =
            mqtt::Connect { client_id, keep_alive_s: 30, clean_session: true, username: None, password: None };
        mqtt::encode_connect(&connect, &mut out);
        out
    }

    async fn read_exact<const N: usize>(stream: &mut TcpStream) -> [u8; N] {
        let mut buf = [0; N];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
            .await
            .expect("the server answers")
            .expect("the connection stays open");
        buf
    }

    /// Waits for the server to close: EOF, or a reset if it had unread bytes.
    async fn assert_closed_by_server(stream: &mut TcpStream) {
        let mut buf = [0; 16];
        let read =
            tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("the server closes the connection");
        match read {
            Ok(0) => {}
            Ok(n) => panic!("expected EOF, got {:02x?}", &buf[..n]),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }
    }

    async fn assert_still_open(stream: &mut TcpStream) {
        let mut buf = [0; 16];
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        assert!(read.is_err(), "expected silence, got {read:?}");
    }

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
        // An MQTT 5 CONNECT: empty properties, empty client id.
        let v5 = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 0];
        client.write_all(&v5).await.unwrap();
        assert_eq!(read_exact::<4>(&mut client).await, mqtt::connack(false, 1));
        assert_closed_by_server(&mut client).await;
        assert_eq!(server.stop().await.connects, 0);
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
    async fn tcp_holds_discards_and_closes_on_peer_eof() {
        let server = Server::start(Protocol::Tcp).await;
        let mut client = server.connect().await;
        client.write_all(&[0xAB; 10_000]).await.unwrap();
        assert_still_open(&mut client).await;
        client.shutdown().await.unwrap();
        assert_closed_by_server(&mut client).await;
        let summary = server.stop().await;
        assert_eq!((summary.accepted, summary.connects), (1, 0));
    }

    #[tokio::test]
    async fn shutdown_drops_every_connection() {
        let server = Server::start(Protocol::Mqtt).await;
        let mut clients = Vec::new();
        for i in 0..3 {
            let mut client = server.connect().await;
            client.write_all(&connect_packet(&format!("c-{i}"))).await.unwrap();
            read_exact::<4>(&mut client).await;
            clients.push(client);
        }
        let idle = server.connect().await;
        clients.push(idle);
        // The accept of the last client may still be queued; the count is
        // checked once the server has stopped.
        let summary = server.stop().await;
        assert_eq!(summary.connects, 3);
        assert!(summary.accepted >= 3);
        for client in &mut clients[..3] {
            assert_closed_by_server(client).await;
        }
    }

    #[tokio::test]
    async fn mqtt_no_read_answers_connect_then_stops_reading() {
        let opts = ServeOptions { read: false, backlog: 64, ..ServeOptions::default() };
        let server = Server::start_with(opts).await;
        let mut client = server.connect().await;
        client.write_all(&connect_packet("c-4")).await.unwrap();
        assert_eq!(read_exact::<4>(&mut client).await, mqtt::connack(false, 0));
        client.write_all(&mqtt::PINGREQ).await.unwrap();
        assert_still_open(&mut client).await;
        // Not even the peer's FIN is noticed.
        client.shutdown().await.unwrap();
        assert_still_open(&mut client).await;
        assert_eq!(server.stop().await.connects, 1);
    }

    #[tokio::test]
    async fn mqtt_shutdown_after_sends_fin_after_connack() {
        let opts =
            ServeOptions { shutdown_after: Some(Duration::from_millis(50)), backlog: 64, ..ServeOptions::default() };
        let server = Server::start_with(opts).await;
        let mut client = server.connect().await;
        client.write_all(&connect_packet("c-5")).await.unwrap();
        assert_eq!(read_exact::<4>(&mut client).await, mqtt::connack(false, 0));
        assert_closed_by_server(&mut client).await;
        assert_eq!(server.stop().await.connects, 1);
    }

    /// A waker that counts its wake-ups.
    struct CountingWaker(AtomicU64);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Polls `future` once on a blocking thread, so that a poll that never
    /// returns (a spin) fails the test instead of hanging it.
    async fn poll_once<F>(mut future: F, waker: &std::task::Waker) -> (F, Poll<F::Output>)
    where
        F: Future + Unpin + Send + 'static,
        F::Output: Send,
    {
        let waker = waker.clone();
        let poll = tokio::task::spawn_blocking(move || {
            let poll = Pin::new(&mut future).poll(&mut std::task::Context::from_waker(&waker));
            (future, poll)
        });
        tokio::time::timeout(PATIENCE, poll).await.expect("a poll returns instead of spinning").unwrap()
    }

    /// Without reading, arriving data must not wake the connection: the socket
    /// would stay readable and the task spin.
    #[tokio::test]
    async fn tcp_no_read_is_not_woken_by_data() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let opts = ServeOptions { protocol: Protocol::Tcp, read: false, ..ServeOptions::default() };
        let shutdown = CancellationToken::new();
        let session = Box::pin(run(stream, &opts, shutdown.clone(), Arc::new(AtomicU64::new(0))));
        let wakes = Arc::new(CountingWaker(AtomicU64::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let (session, poll) = poll_once(session, &waker).await;
        assert!(poll.is_pending());

        // Until the window closes: the server's receive buffer is full.
        let sent = crate::embedded::recipes::fill(&client).await;
        assert!(sent > 65536, "{sent} bytes");
        // Asserting that nothing happens needs a pause: long enough for this
        // runtime to turn its I/O driver, which would deliver the readiness.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "woken by data it will not read");

        shutdown.cancel();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "woken by shutdown");
        assert!(poll_once(session, &waker).await.1.is_ready());
    }

    #[test]
    fn reassembles_a_connect_split_byte_by_byte() {
        let connects = Arc::new(AtomicU64::new(0));
        let mut conn = Connection::new(Protocol::Mqtt, true, Arc::clone(&connects));
        let packet = connect_packet("split-client");
        for (i, byte) in packet.iter().enumerate() {
            let mut replies = Replies::new();
            assert_eq!(conn.on_bytes(std::slice::from_ref(byte), &mut replies), Step::Continue);
            let last = i == packet.len() - 1;
            assert_eq!(replies.as_slice().is_empty(), !last, "after byte {i}");
        }
        assert_eq!(conn.phase, Phase::Connected);
        assert_eq!(connects.load(Ordering::Relaxed), 1);
        // No bytes are kept once the packet is complete.
        assert_eq!(conn.partial.capacity(), 0);
    }

    #[test]
    fn replies_spill_past_the_stack_buffer_in_order() {
        let mut replies = Replies::new();
        for i in 0..REPLY_STACK {
            replies.push(&[i as u8, 0xFF]);
        }
        let bytes = replies.as_slice();
        assert_eq!(bytes.len(), REPLY_STACK * 2);
        assert!(bytes.chunks(2).enumerate().all(|(i, c)| c == [i as u8, 0xFF]));
    }

    /// The per-connection budget: an idle connection's task must stay small.
    /// The read buffer lives on the stack, never in the future.
    #[tokio::test]
    async fn connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let opts = ServeOptions { shutdown_after: Some(Duration::from_secs(1)), ..ServeOptions::default() };
        let future = run(stream, &opts, CancellationToken::new(), Arc::new(AtomicU64::new(0)));
        let size = std::mem::size_of_val(&future);
        // 392 bytes with tokio 1.54: socket 40, state 64, cancellation 72,
        // readiness 152, the boxed `shutdown_after` timer and its poll 16.
        // A read buffer in the future would be 2 KiB more.
        assert!(size <= 400, "connection future is {size} bytes");
    }
}
