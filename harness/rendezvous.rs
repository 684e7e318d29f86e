//! The common start of a sharded run (`sockcap run --shard I/N --rendezvous HOST:PORT`).
//!
//! Shard 0 listens on PORT (every address); the others connect to HOST:PORT, retrying
//! until it listens, and register with their index, N, the scenario file's SHA-256 and
//! the sockcap version. Shard 0 refuses a registration that differs from its own run
//! (another scenario, another N, another version, an index already taken) at once, and
//! keeps waiting for the right one. When all N are there it tells every shard to start
//! in [`START_LEAD`]: a delay, not a wall-clock instant, so the hosts' clocks need not
//! agree (the shards start within the one-way delays of the messages, well under a
//! millisecond in one cluster). From then each shard runs its phases on its own clock.
//!
//! The messages are JSON lines over TCP. A shard whose peers never arrive gives up at
//! its timeout ([`RendezvousError::TimedOut`], exit 3).

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout_at, Instant};

use crate::shard::Shard;

/// How long after the last registration every shard starts.
pub const START_LEAD: Duration = Duration::from_secs(1);
/// The default of `--rendezvous-timeout`: pods of one Job may start minutes apart
/// (image pulls, scheduling).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a shard retries reaching shard 0.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long shard 0 waits for a connection's registration line.
const REGISTER_WITHIN: Duration = Duration::from_secs(10);

/// Who this shard is, as it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub index: u32,
    pub count: u32,
    pub scenario_sha256: String,
    pub version: String,
    pub host: String,
}

impl Member {
    pub fn new(shard: Shard, scenario_sha256: String) -> Member {
        Member {
            index: shard.index,
            count: shard.count,
            scenario_sha256,
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_name(),
        }
    }

    /// Why shard 0 (`self`) refuses `other`, if it does.
    fn refuses(&self, other: &Member) -> Option<String> {
        if other.count != self.count {
            return Some(format!(
                "it runs --shard {}/{} but shard 0 runs {}/{}: every shard must be given the same N",
                other.index, other.count, self.index, self.count
            ));
        }
        if other.index == 0 || other.index >= self.count {
            return Some(format!("index {} is not one of 1..{} (shard 0 leads)", other.index, self.count));
        }
        if other.scenario_sha256 != self.scenario_sha256 {
            return Some(format!(
                "it runs another scenario (sha256 {:.12}… there, {:.12}… on shard 0): every shard must run the same file",
                other.scenario_sha256, self.scenario_sha256
            ));
        }
        if other.version != self.version {
            return Some(format!(
                "it runs sockcap {} but shard 0 runs {}: use one build on every host",
                other.version, self.version
            ));
        }
        None
    }
}

/// The machine's host name (the pod name in Kubernetes).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".to_string()
    }
}

/// What the shards say to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
enum Msg {
    /// Shard i → shard 0.
    Register(Member),
    /// Shard 0 → shard i: registered, `registered` of `count` are there.
    Waiting { registered: u32, count: u32 },
    /// Shard 0 → every shard: start phase 1 this long after receiving this.
    Start { in_us: u64 },
    /// Shard 0 → shard i: not part of this run (or shard 0 gave up).
    Refused { reason: String },
}

/// Why a shard did not get a common start.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    /// Shard 0 refused this shard: it runs another scenario, N or version.
    #[error("refused by the rendezvous: {0}")]
    Refused(String),
    /// The peers did not all arrive in time.
    #[error("{0}")]
    TimedOut(String),
    /// Shard 0 cannot listen on the rendezvous port.
    #[error("{0}")]
    Listen(String),
}

/// Agree on the start of phase 1 with the other shards: the local instant to start at.
pub async fn agree(me: &Member, rendezvous: &str, within: Duration) -> Result<Instant, RendezvousError> {
    let deadline = Instant::now() + within;
    if me.index == 0 {
        let port = rendezvous.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).ok_or_else(|| {
            RendezvousError::Listen(format!("--rendezvous {rendezvous}: write HOST:PORT, e.g. sockcap-0.sockcap:7700"))
        })?;
        lead(me, port, deadline, within).await
    } else {
        join(me, rendezvous, deadline, within).await
    }
}

/// Shard 0: wait for shards 1..N, then start them together.
async fn lead(me: &Member, port: u16, deadline: Instant, within: Duration) -> Result<Instant, RendezvousError> {
    let listener = listen(port).await?;
    crate::stderr::line(format_args!(
        "sockcap: rendezvous: shard 0 waits on port {port} for {} more shards",
        me.count - 1
    ));
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let mut members: BTreeMap<u32, (u64, OwnedWriteHalf)> = BTreeMap::new();
    let mut refusals: Vec<String> = Vec::new();
    let mut next_id = 0u64;
    while (members.len() as u32) + 1 < me.count {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                next_id += 1;
                tokio::spawn(registration(stream, peer, next_id, events_tx.clone()));
            }
            Some(event) = events.recv() => match event {
                Event::Registered { id, peer, member, mut out } => {
                    let refusal = me.refuses(&member).or_else(|| {
                        members.contains_key(&member.index).then(|| format!("index {} is already registered", member.index))
                    });
                    if let Some(reason) = refusal {
                        let reason = format!("shard {} from {peer} ({}): {reason}", member.index, member.host);
                        crate::stderr::line(format_args!("sockcap: rendezvous: refused {reason}"));
                        let _ = send(&mut out, &Msg::Refused { reason: reason.clone() }).await;
                        refusals.push(reason);
                        continue;
                    }
                    let registered = members.len() as u32 + 2;
                    if send(&mut out, &Msg::Waiting { registered, count: me.count }).await.is_ok() {
                        crate::stderr::line(format_args!(
                            "sockcap: rendezvous: shard {} ({}, {peer}) registered; {registered} of {} are there",
                            member.index, member.host, me.count
                        ));
                        members.insert(member.index, (id, out));
                    }
                }
                Event::Gone { id, index } => {
                    // Only the registration that left, not a later one for the same index.
                    if members.get(&index).is_some_and(|(held, _)| *held == id) {
                        members.remove(&index);
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let missing: Vec<String> =
                    (1..me.count).filter(|i| !members.contains_key(i)).map(|i| i.to_string()).collect();
                let refused = if refusals.is_empty() { String::new() } else { format!("; refused: {}", refusals.join("; ")) };
                let why = format!(
                    "shard {} never registered with the rendezvous on port {port} within {}{refused}",
                    missing.join(", "),
                    humantime::format_duration(within)
                );
                for (_, out) in members.values_mut() {
                    let reason = format!("shard 0 gave up: {why}");
                    let _ = send(out, &Msg::Refused { reason }).await;
                }
                return Err(RendezvousError::TimedOut(why));
            }
        }
    }
    let start = Instant::now() + START_LEAD;
    let order = Msg::Start { in_us: START_LEAD.as_micros() as u64 };
    for (_, out) in members.values_mut() {
        let _ = send(out, &order).await;
    }
    Ok(start)
}

/// Listen on every address: both families where the kernel allows, IPv4 otherwise.
async fn listen(port: u16) -> Result<TcpListener, RendezvousError> {
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)
        .and_then(|s| {
            s.set_only_v6(false)?;
            s.set_reuse_address(true)?;
            s.bind(&any6.into())?;
            s.listen(1024)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .and_then(|s| TcpListener::from_std(s.into()));
    match socket {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(("0.0.0.0", port)).await.map_err(|e| {
            RendezvousError::Listen(format!("shard 0 cannot listen for the rendezvous on port {port}: {e}"))
        }),
    }
}

/// What a connection to shard 0 came to.
#[derive(Debug)]
enum Event {
    Registered {
        id: u64,
        peer: SocketAddr,
        member: Member,
        out: OwnedWriteHalf,
    },
    /// A registered shard's connection closed.
    Gone {
        id: u64,
        index: u32,
    },
}

/// Read one connection's registration, then watch for it to close.
async fn registration(stream: TcpStream, peer: SocketAddr, id: u64, events: mpsc::UnboundedSender<Event>) {
    let (read, out) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let first = tokio::time::timeout(REGISTER_WITHIN, lines.next_line()).await;
    let Ok(Ok(Some(line))) = first else { return };
    let Ok(Msg::Register(member)) = serde_json::from_str::<Msg>(&line) else {
        crate::stderr::line(format_args!(
            "sockcap: rendezvous: ignoring {peer}: not a shard's registration: {line:.120}"
        ));
        return;
    };
    let index = member.index;
    if events.send(Event::Registered { id, peer, member, out }).is_err() {
        return;
    }
    while let Ok(Some(_)) = lines.next_line().await {}
    let _ = events.send(Event::Gone { id, index });
}

/// Shard i > 0: register with shard 0 and wait for the start.
async fn join(me: &Member, rendezvous: &str, deadline: Instant, within: Duration) -> Result<Instant, RendezvousError> {
    let mut last_problem = String::from("no answer yet");
    loop {
        match timeout_at(deadline, attempt(me, rendezvous)).await {
            Ok(Ok(start)) => return Ok(start),
            Ok(Err(Attempt::Refused(reason))) => return Err(RendezvousError::Refused(reason)),
            Ok(Err(Attempt::Retry(problem))) => last_problem = problem,
            Err(_) => {}
        }
        if Instant::now() + RETRY_EVERY >= deadline {
            return Err(RendezvousError::TimedOut(format!(
                "no common start from shard 0 at {rendezvous} within {} (last: {last_problem})",
                humantime::format_duration(within)
            )));
        }
        sleep(RETRY_EVERY).await;
    }
}

enum Attempt {
    Refused(String),
    Retry(String),
}

/// One connection to shard 0: register, then wait for the start or a refusal.
async fn attempt(me: &Member, rendezvous: &str) -> Result<Instant, Attempt> {
    let stream = connect(rendezvous).await.map_err(|e| Attempt::Retry(format!("connecting: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (read, mut out) = stream.into_split();
    send(&mut out, &Msg::Register(me.clone())).await.map_err(|e| Attempt::Retry(format!("registering: {e}")))?;
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Err(Attempt::Retry("shard 0 closed the connection".into())),
            Err(e) => return Err(Attempt::Retry(format!("reading: {e}"))),
        };
        match serde_json::from_str::<Msg>(&line) {
            Ok(Msg::Start { in_us }) => return Ok(Instant::now() + Duration::from_micros(in_us)),
            Ok(Msg::Refused { reason }) => return Err(Attempt::Refused(reason)),
            Ok(Msg::Waiting { registered, count }) => {
                crate::stderr::line(format_args!(
                    "sockcap: rendezvous: registered; {registered} of {count} shards are there"
                ));
            }
            Ok(Msg::Register(_)) | Err(_) => {
                return Err(Attempt::Refused(format!(
                    "{rendezvous} does not speak the sockcap rendezvous: {line:.120}"
                )))
            }
        }
    }
}

/// Connect to shard 0 from a port bound with SO_REUSEADDR: that port lies in
/// ip_local_port_range, where the run binds its own source ports, and a later bind() may
/// share a port only with sockets that all set it. Without the flag this socket (or its
/// TIME_WAIT) made the run's bind of the same address and port fail with EADDRINUSE
/// (measured: 1 connect in 1,200 in the lab). Bound before connect: a port connect()
/// picks may already be held by other connections (to other destinations) that did not
/// set the flag, which block that bind as well (measured: 3 tests in 5 failed with
/// 8,000 loopback TIME_WAITs left by the test suite); bind() picks a port no socket holds.
async fn connect(rendezvous: &str) -> std::io::Result<TcpStream> {
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

async fn send(out: &mut OwnedWriteHalf, msg: &Msg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).expect("rendezvous messages serialize");
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u32, count: u32, sha: &str) -> Member {
        Member { index, count, scenario_sha256: sha.into(), version: "1".into(), host: format!("h{index}") }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn all_shards_get_one_start() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let within = Duration::from_secs(10);
        let lead = tokio::spawn(async move { agree(&member(0, 3, "a"), &format!("x:{port}"), within).await });
        let (a, b) = (addr.clone(), addr.clone());
        let one = tokio::spawn(async move { agree(&member(1, 3, "a"), &a, within).await });
        let two = tokio::spawn(async move { agree(&member(2, 3, "a"), &b, within).await });
        let mut starts = Vec::new();
        for shard in [lead, one, two] {
            starts.push(shard.await.unwrap().unwrap());
        }
        let spread = starts.iter().max().unwrap().duration_since(*starts.iter().min().unwrap());
        assert!(spread < Duration::from_millis(50), "starts {spread:?} apart");
        assert!(starts[0] > Instant::now(), "the start lies ahead");
    }

    #[tokio::test]
    async fn another_scenario_is_refused_at_once_and_the_lead_waits_on() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let lead =
            tokio::spawn(async move { agree(&member(0, 2, "a"), &format!("x:{port}"), Duration::from_secs(3)).await });
        let asked = Instant::now();
        let refused = agree(&member(1, 2, "b"), &addr, Duration::from_secs(10)).await;
        let Err(RendezvousError::Refused(why)) = refused else { panic!("not refused: {refused:?}") };
        assert!(why.contains("another scenario"), "{why}");
        assert!(asked.elapsed() < Duration::from_secs(2), "refused after {:?}", asked.elapsed());
        // The lead keeps waiting for the right shard 1, then gives up naming it.
        let Err(RendezvousError::TimedOut(why)) = lead.await.unwrap() else { panic!("the lead did not time out") };
        assert!(why.contains("shard 1 never registered") && why.contains("another scenario"), "{why}");
    }

    #[tokio::test]
    async fn other_n_version_and_taken_index_are_refused() {
        let lead = member(0, 3, "a");
        assert!(lead.refuses(&member(1, 4, "a")).unwrap().contains("same N"));
        assert!(lead.refuses(&member(3, 3, "a")).unwrap().contains("not one of"));
        let mut other = member(2, 3, "a");
        other.version = "2".into();
        assert!(lead.refuses(&other).unwrap().contains("sockcap 2"));
        assert_eq!(lead.refuses(&member(2, 3, "a")), None);

        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let within = Duration::from_secs(5);
        let lead = tokio::spawn(async move { agree(&member(0, 3, "a"), &format!("x:{port}"), within).await });
        let a = addr.clone();
        let first = tokio::spawn(async move { agree(&member(1, 3, "a"), &a, within).await });
        sleep(Duration::from_millis(500)).await;
        let twice = agree(&member(1, 3, "a"), &addr, within).await;
        let Err(RendezvousError::Refused(why)) = twice else { panic!("a second shard 1 was not refused: {twice:?}") };
        assert!(why.contains("already registered"), "{why}");
        let third = agree(&member(2, 3, "a"), &addr, within).await;
        assert!(third.is_ok() && first.await.unwrap().is_ok() && lead.await.unwrap().is_ok());
    }

    /// The rendezvous connection's port stays free for the run's own explicit source
    /// ports (bound with SO_REUSEADDR), while it is open and in its TIME_WAIT.
    #[tokio::test]
    async fn the_rendezvous_port_does_not_block_the_runs_source_ports() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let there = listener.local_addr().unwrap().to_string();
        let bind_again = |local: std::net::SocketAddr| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket.bind(&local.into())
        };
        let ours = connect(&there).await.unwrap();
        let local = ours.local_addr().unwrap();
        assert!(bind_again(local).is_ok(), "an open rendezvous connection blocked {local}");
        // A plain connect (no SO_REUSEADDR) would block it: what the flag is for.
        let plain = std::net::TcpStream::connect(&there).unwrap();
        assert!(bind_again(plain.local_addr().unwrap()).is_err());
        // Closed first on our side: TIME_WAIT, still no block.
        drop(ours);
        let (accepted, _) = listener.accept().unwrap();
        drop(accepted);
        sleep(Duration::from_millis(50)).await;
        assert!(bind_again(local).is_ok(), "the rendezvous connection's TIME_WAIT blocked {local}");
    }

    #[tokio::test]
    async fn a_shard_alone_gives_up() {
        let port = free_port();
        let gave_up = agree(&member(1, 2, "a"), &format!("127.0.0.1:{port}"), Duration::from_millis(600)).await;
        let Err(RendezvousError::TimedOut(why)) = gave_up else { panic!("no timeout: {gave_up:?}") };
        assert!(why.contains("no common start"), "{why}");
    }
}
