//! The session of one accepted connection of the embedded target: its
//! lifecycle ([`Input`], [`Step`]) over TCP, whatever protocol it speaks
//! ([`ServerProtocol`]), and the per-connection misbehaviours of
//! [`ServeOptions`] (the listener's, `accept` and `defer_accept`, are the
//! server's).
//!
//! Two misbehaviours serve the TCP state recipes, and `on_eof` a third:
//! - `read: false`: stop reading (`tcp`: at once; `mqtt`: once CONNACK is
//!   sent), so the client's data fills the receive window. The task then waits
//!   only for shutdown and its timer; it never polls the socket again.
//! - `shutdown_after`: a timer, armed at accept, that shuts down the write side
//!   (FIN first) and keeps the socket.
//! - `on_eof: hold`: on the peer's FIN, stop reading and keep the socket.
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
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::Poll;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::embedded::options::ServeOptions;
use crate::protocol::{OnEof, Protocol};

use super::exchange::{Replies, Step};
use super::protocol::ServerProtocol;
use super::router::{Delivery, Inbox, ROUTER};
use crate::protocol::mqtt::traffic::encode_forward;

/// Bytes read per readiness event.
const READ_CHUNK: usize = 2048;

/// Serves one accepted connection until the protocol closes it, the peer goes
/// away, or `shutdown` is cancelled. Returning drops (closes) the socket.
/// Uses `opts.protocol`, `on_eof`, `read` and `shutdown_after`; call it in the
/// runtime, at accept: the `shutdown_after` delay starts here.
///
/// An `async` block rather than an `async fn`: a block uses its captures in
/// place, where an `async fn` would store each argument twice.
pub(in crate::embedded) fn run(
    stream: TcpStream,
    opts: &ServeOptions,
    shutdown: CancellationToken,
    connects: Arc<AtomicU64>,
) -> impl Future<Output = ()> + Send {
    let mut conn = Connection::new(opts.protocol, opts.read, connects);
    let on_eof = opts.on_eof;
    // Boxed, and only when asked for: a timer is larger than the rest of the task.
    if let Some(delay) = opts.shutdown_after {
        conn.extras_mut().timer = Some(Box::pin(tokio::time::sleep(delay)));
    }
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
                event = timer_or_delivery(&mut conn.extras) => event,
                ready = stream.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => {
                    Event::Ready(ready.is_ok())
                }
            };
            let step = match event {
                Event::Delivery(delivery) => conn.deliver(&stream, delivery),
                Event::HalfClose => {
                    if let Some(extras) = conn.extras.as_mut() {
                        extras.timer = None;
                    }
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
#[derive(Debug)]
enum Event {
    /// The `shutdown_after` timer fired.
    HalfClose,
    /// The socket is ready for the awaited direction (`false`: it failed).
    Ready(bool),
    /// A message routed to this subscriber.
    Delivery(Delivery),
}

/// The `shutdown_after` timer, or the next message routed to a subscribed connection;
/// never without either. One `poll_fn` for both holds only the two borrows (a future
/// per source would cost the idle connection's task 8 bytes more).
fn timer_or_delivery(extras: &mut Option<Box<Extras>>) -> impl Future<Output = Event> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(extras) = extras else { return Poll::Pending };
        if let Some(sleep) = &mut extras.timer {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::HalfClose);
            }
        }
        if let Some(inbox) = &mut extras.inbox {
            // The inbox keeps a sender: its channel never closes while it exists.
            if let Poll::Ready(Some(delivery)) = inbox.rx.poll_recv(cx) {
                return Poll::Ready(Event::Delivery(delivery));
            }
        }
        Poll::Pending
    })
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

/// The state of one connection between reads.
#[derive(Debug)]
pub(super) struct Connection {
    /// The server side of its protocol, with the protocol's state.
    protocol: ServerProtocol,
    input: Input,
    /// Whether to keep reading once the protocol handshake is done (`read`).
    keep_reading: bool,
    /// The start of a packet split across reads; empty and unallocated otherwise.
    partial: Vec<u8>,
    /// Replies the socket has not taken yet; empty and unallocated otherwise.
    unsent: Vec<u8>,
    /// The server-wide count of CONNECTs answered with CONNACK 0, for the protocol.
    connects: Arc<AtomicU64>,
    /// What few connections have: the `shutdown_after` timer, a subscribed MQTT client's
    /// inbox. Boxed, and only when one of them is there.
    extras: Option<Box<Extras>>,
}

/// The rare parts of a connection's state.
#[derive(Debug, Default)]
struct Extras {
    /// `shutdown_after`, armed at accept.
    timer: Option<Pin<Box<Sleep>>>,
    /// Messages routed to this subscriber.
    inbox: Option<Inbox>,
}

impl Connection {
    pub(super) fn new(protocol: Protocol, read: bool, connects: Arc<AtomicU64>) -> Self {
        let mut conn = Connection {
            protocol: ServerProtocol::new(protocol),
            input: Input::Open,
            keep_reading: read,
            partial: Vec::new(),
            unsent: Vec::new(),
            connects,
            extras: None,
        };
        conn.stop_reading_if_done();
        conn
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
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
        if !self.keep_reading && self.input == Input::Open && !self.protocol.awaits_handshake() {
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
                // Subscribed before the SUBACK goes out.
                for (filter, qos) in replies.subscriptions.drain(..) {
                    let v5 = replies.v5;
                    let inbox = self.extras_mut().inbox.get_or_insert_with(|| Inbox::new(v5));
                    ROUTER.subscribe(&filter, qos, inbox);
                }
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
    pub(super) fn on_bytes(&mut self, bytes: &[u8], replies: &mut Replies) -> Step {
        if self.partial.is_empty() {
            let (used, step) = self.protocol.on_packets(bytes, replies, &self.connects);
            if step == Step::Continue {
                self.partial.extend_from_slice(&bytes[used..]);
            }
            return step;
        }
        let mut pending = std::mem::take(&mut self.partial);
        pending.extend_from_slice(bytes);
        let (used, step) = self.protocol.on_packets(&pending, replies, &self.connects);
        pending.drain(..used);
        if !pending.is_empty() {
            self.partial = pending;
        }
        step
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

    /// A routed message out to this subscriber, after what is still unsent.
    fn deliver(&mut self, stream: &TcpStream, (routed, qos): Delivery) -> Step {
        let Some(inbox) = self.extras.as_mut().and_then(|e| e.inbox.as_mut()) else { return Step::Continue };
        let id = if qos > 0 { inbox.next_id() } else { 0 };
        let mut packet = Vec::with_capacity(routed.payload.len() + routed.topic.len() + 8);
        encode_forward(&routed.topic, qos, id, inbox.v5, &routed.payload, &mut packet);
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(&packet);
            return Step::Continue;
        }
        self.send(stream, &packet)
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

/// For the fuzz target `mqtt_server` (`fuzz/`): the replies of a connection speaking
/// `protocol` to `reads` received in turn, each handled as [`Connection::on_bytes`]
/// handles a read, until the connection would close.
#[doc(hidden)]
pub fn replies_to_reads<'a>(protocol: Protocol, reads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut conn = Connection::new(protocol, true, Arc::new(AtomicU64::new(0)));
    let mut sent = Vec::new();
    for read in reads {
        let mut replies = Replies::new();
        let step = conn.on_bytes(read, &mut replies);
        sent.extend_from_slice(replies.as_slice());
        if step != Step::Continue {
            break;
        }
    }
    sent
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::embedded::testing::{
        assert_closed_by_server, assert_still_open, connect_packet, read_exact, TestServer as Server,
    };
    use crate::protocol::mqtt;

    const PATIENCE: Duration = Duration::from_secs(5);

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
        assert!(!conn.protocol.awaits_handshake());
        assert_eq!(connects.load(Ordering::Relaxed), 1);
        // No bytes are kept once the packet is complete.
        assert_eq!(conn.partial.capacity(), 0);
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
        // readiness 152, the boxed extras (`shutdown_after` timer, a subscriber's inbox) and their poll 16.
        // A read buffer in the future would be 2 KiB more.
        assert!(size <= 400, "connection future is {size} bytes");
    }
}
