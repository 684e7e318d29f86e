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
//! With a token (`--rendezvous-token-file` or `$SOCKCAP_RENDEZVOUS_TOKEN`, [`token`]),
//! shard 0 admits only a peer that answers its random challenge with the token's
//! HMAC; any other peer is refused and logged by its address, and the run goes on with
//! its own shards. Without one, anyone who reaches the port can join, and every shard
//! says so on stderr.
//!
//! The messages are JSON lines over TCP ([`wire`]). A shard whose peers never arrive
//! gives up at its timeout ([`RendezvousError::TimedOut`], exit 3).

mod member;
pub mod token;
mod wire;

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout_at, Instant};

pub use member::{host_name, Member};
pub use token::{Token, TokenError, TOKEN_ENV};

use token::Challenge;
use wire::{connect, hex, parse_challenge, send, unhex, Msg};

/// How long after the last registration every shard starts.
pub const START_LEAD: Duration = Duration::from_secs(1);
/// The default of `--rendezvous-timeout`: pods of one Job may start minutes apart
/// (image pulls, scheduling).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a shard retries reaching shard 0.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long shard 0 waits for a connection's registration line.
const REGISTER_WITHIN: Duration = Duration::from_secs(10);
/// The most shard 0 reads from one connection (a registration is about 300 bytes): a
/// peer that sends more, or a line without end, is read no further.
const MOST_READ: u64 = 64 * 1024;

/// Why a shard did not get a common start.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    /// Shard 0 refused this shard: it runs another scenario, N or version, or it lacks
    /// the run's token.
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
/// With a `token`, shard 0 admits only peers that prove they hold it, and a shard proves it.
pub async fn agree(
    me: &Member,
    token: Option<&Token>,
    rendezvous: &str,
    within: Duration,
) -> Result<Instant, RendezvousError> {
    let deadline = Instant::now() + within;
    if token.is_none() {
        crate::stderr::line(format_args!(
            "sockcap: rendezvous: warning: no token (--rendezvous-token-file or ${TOKEN_ENV}): anyone who reaches \
             the rendezvous port can join this run"
        ));
    }
    if me.index == 0 {
        let port = rendezvous.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).ok_or_else(|| {
            RendezvousError::Listen(format!("--rendezvous {rendezvous}: write HOST:PORT, e.g. sockcap-0.sockcap:7700"))
        })?;
        lead(me, token.cloned().map(Arc::new), port, deadline, within).await
    } else {
        join(me, token, rendezvous, deadline, within).await
    }
}

/// Shard 0: wait for shards 1..N, then start them together.
async fn lead(
    me: &Member,
    token: Option<Arc<Token>>,
    port: u16,
    deadline: Instant,
    within: Duration,
) -> Result<Instant, RendezvousError> {
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
                // An IPv4 peer of the dual-stack listener as 10.0.0.2, not ::ffff:10.0.0.2.
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                next_id += 1;
                tokio::spawn(registration(stream, peer, next_id, token.clone(), events_tx.clone()));
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
                Event::Unproven { peer } => {
                    refusals.push(format!("a peer from {peer} without the rendezvous token"));
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
    /// A peer that did not answer the challenge with the token's HMAC: refused.
    Unproven {
        peer: SocketAddr,
    },
    /// A registered shard's connection closed.
    Gone {
        id: u64,
        index: u32,
    },
}

/// Challenge a connection, read its registration and check its answer, then watch for
/// it to close. A peer without the token's answer is refused and logged by its address
/// only: what it sent is not shown.
async fn registration(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    token: Option<Arc<Token>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let challenge = match Challenge::random() {
        Ok(challenge) => challenge,
        Err(e) => {
            crate::stderr::line(format_args!("sockcap: rendezvous: no random challenge for {peer}: {e}"));
            return;
        }
    };
    let (read, mut out) = stream.into_split();
    if send(&mut out, &Msg::challenge(&challenge)).await.is_err() {
        return;
    }
    let mut lines = BufReader::new(read.take(MOST_READ)).lines();
    let first = tokio::time::timeout(REGISTER_WITHIN, lines.next_line()).await;
    let Ok(Ok(Some(line))) = first else { return };
    let Ok(Msg::Register { member, answer }) = serde_json::from_str::<Msg>(&line) else {
        crate::stderr::line(format_args!("sockcap: rendezvous: ignoring {peer}: not a shard's registration"));
        return;
    };
    if let Some(token) = &token {
        let proven = answer.as_deref().and_then(unhex).is_some_and(|answer| token.verify(&challenge, &answer));
        if !proven {
            crate::stderr::line(format_args!(
                "sockcap: rendezvous: refused {peer}: it did not answer with the rendezvous token"
            ));
            let reason = "shard 0 needs the run's rendezvous token: give every shard the same \
                          --rendezvous-token-file or $SOCKCAP_RENDEZVOUS_TOKEN";
            let _ = send(&mut out, &Msg::Refused { reason: reason.into() }).await;
            let _ = events.send(Event::Unproven { peer });
            return;
        }
    }
    let index = member.index;
    if events.send(Event::Registered { id, peer, member, out }).is_err() {
        return;
    }
    while let Ok(Some(_)) = lines.next_line().await {}
    let _ = events.send(Event::Gone { id, index });
}

/// Shard i > 0: register with shard 0 and wait for the start.
async fn join(
    me: &Member,
    token: Option<&Token>,
    rendezvous: &str,
    deadline: Instant,
    within: Duration,
) -> Result<Instant, RendezvousError> {
    let mut last_problem = String::from("no answer yet");
    loop {
        match timeout_at(deadline, attempt(me, token, rendezvous)).await {
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

/// One connection to shard 0: answer its challenge, register, then wait for the start
/// or a refusal.
async fn attempt(me: &Member, token: Option<&Token>, rendezvous: &str) -> Result<Instant, Attempt> {
    let stream = connect(rendezvous).await.map_err(|e| Attempt::Retry(format!("connecting: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (read, mut out) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let not_ours = |line: &str| {
        Attempt::Refused(format!("{rendezvous} does not speak this version of the sockcap rendezvous: {line:.120}"))
    };
    let line = next_line(&mut lines).await?;
    let challenge = match serde_json::from_str::<Msg>(&line) {
        Ok(Msg::Challenge { challenge }) => parse_challenge(&challenge).ok_or_else(|| not_ours(&line))?,
        _ => return Err(not_ours(&line)),
    };
    let answer = token.map(|token| hex(&token.answer(&challenge)));
    let register = Msg::Register { member: me.clone(), answer };
    send(&mut out, &register).await.map_err(|e| Attempt::Retry(format!("registering: {e}")))?;
    loop {
        let line = next_line(&mut lines).await?;
        match serde_json::from_str::<Msg>(&line) {
            Ok(Msg::Start { in_us }) => return Ok(Instant::now() + Duration::from_micros(in_us)),
            Ok(Msg::Refused { reason }) => return Err(Attempt::Refused(reason)),
            Ok(Msg::Waiting { registered, count }) => {
                crate::stderr::line(format_args!(
                    "sockcap: rendezvous: registered; {registered} of {count} shards are there"
                ));
            }
            Ok(Msg::Register { .. } | Msg::Challenge { .. }) | Err(_) => return Err(not_ours(&line)),
        }
    }
}

/// The next line from shard 0; a closed or broken connection is worth another attempt.
async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>) -> Result<String, Attempt> {
    match lines.next_line().await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(Attempt::Retry("shard 0 closed the connection".into())),
        Err(e) => Err(Attempt::Retry(format!("reading: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u32, count: u32, sha: &str) -> Member {
        Member { index, count, scenario_sha256: sha.into(), version: "1".into(), host: format!("h{index}") }
    }

    fn token(text: &str) -> Token {
        Token::from_env_value(text).unwrap()
    }

    /// A connection to shard 0's port once it listens.
    async fn connect_when_listening(port: u16) -> TcpStream {
        loop {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => return stream,
                Err(_) => sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn all_shards_get_one_start() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let within = Duration::from_secs(10);
        let lead = tokio::spawn(async move { agree(&member(0, 3, "a"), None, &format!("x:{port}"), within).await });
        let (a, b) = (addr.clone(), addr.clone());
        let one = tokio::spawn(async move { agree(&member(1, 3, "a"), None, &a, within).await });
        let two = tokio::spawn(async move { agree(&member(2, 3, "a"), None, &b, within).await });
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
            tokio::spawn(
                async move { agree(&member(0, 2, "a"), None, &format!("x:{port}"), Duration::from_secs(3)).await },
            );
        let asked = Instant::now();
        let refused = agree(&member(1, 2, "b"), None, &addr, Duration::from_secs(10)).await;
        let Err(RendezvousError::Refused(why)) = refused else { panic!("not refused: {refused:?}") };
        assert!(why.contains("another scenario"), "{why}");
        assert!(asked.elapsed() < Duration::from_secs(2), "refused after {:?}", asked.elapsed());
        // The lead keeps waiting for the right shard 1, then gives up naming it.
        let Err(RendezvousError::TimedOut(why)) = lead.await.unwrap() else { panic!("the lead did not time out") };
        assert!(why.contains("shard 1 never registered") && why.contains("another scenario"), "{why}");
    }

    #[tokio::test]
    async fn a_taken_index_is_refused() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let within = Duration::from_secs(5);
        let lead = tokio::spawn(async move { agree(&member(0, 3, "a"), None, &format!("x:{port}"), within).await });
        let a = addr.clone();
        let first = tokio::spawn(async move { agree(&member(1, 3, "a"), None, &a, within).await });
        sleep(Duration::from_millis(500)).await;
        let twice = agree(&member(1, 3, "a"), None, &addr, within).await;
        let Err(RendezvousError::Refused(why)) = twice else { panic!("a second shard 1 was not refused: {twice:?}") };
        assert!(why.contains("already registered"), "{why}");
        let third = agree(&member(2, 3, "a"), None, &addr, within).await;
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
        let gave_up = agree(&member(1, 2, "a"), None, &format!("127.0.0.1:{port}"), Duration::from_millis(600)).await;
        let Err(RendezvousError::TimedOut(why)) = gave_up else { panic!("no timeout: {gave_up:?}") };
        assert!(why.contains("no common start"), "{why}");
    }

    /// With a token, shard 0 refuses a shard without it and one with another token
    /// (each exits at once), and starts the run with the shards that hold it.
    #[tokio::test]
    async fn only_shards_with_the_token_are_admitted() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let within = Duration::from_secs(10);
        let ours = token("the fleet's own secret, 32 bytes");
        let lead_token = ours.clone();
        let lead =
            tokio::spawn(
                async move { agree(&member(0, 2, "a"), Some(&lead_token), &format!("x:{port}"), within).await },
            );
        let asked = Instant::now();
        let without = agree(&member(1, 2, "a"), None, &addr, within).await;
        let Err(RendezvousError::Refused(why)) = without else {
            panic!("a shard without the token joined: {without:?}")
        };
        assert!(why.contains("rendezvous token"), "{why}");
        let wrong = agree(&member(1, 2, "a"), Some(&token("another fleet's secret")), &addr, within).await;
        assert!(matches!(wrong, Err(RendezvousError::Refused(_))), "a shard with another token joined: {wrong:?}");
        assert!(asked.elapsed() < Duration::from_secs(2), "refused after {:?}", asked.elapsed());
        let right = agree(&member(1, 2, "a"), Some(&ours), &addr, within).await;
        assert!(right.is_ok() && lead.await.unwrap().is_ok(), "{right:?}");
    }

    /// A raw client that answers the challenge with garbage is refused, and the
    /// refusal says why without the token.
    #[tokio::test]
    async fn a_wrong_answer_is_refused_and_named_by_address() {
        let port = free_port();
        let secret = "a secret the peer does not hold";
        let lead_token = token(secret);
        let lead = tokio::spawn(async move {
            agree(&member(0, 2, "a"), Some(&lead_token), &format!("x:{port}"), Duration::from_millis(1500)).await
        });
        let mut stream = connect_when_listening(port).await;
        let (read, mut out) = stream.split();
        let mut lines = BufReader::new(read).lines();
        let challenge = lines.next_line().await.unwrap().unwrap();
        assert!(challenge.starts_with(r#"{"msg":"challenge","challenge":""#), "{challenge}");
        let register = format!(
            r#"{{"msg":"register","index":1,"count":2,"scenario_sha256":"a","version":"1","host":"x","answer":"{}"}}"#,
            "00".repeat(32)
        );
        tokio::io::AsyncWriteExt::write_all(&mut out, format!("{register}\n").as_bytes()).await.unwrap();
        let refused = lines.next_line().await.unwrap().unwrap();
        assert!(refused.contains(r#""msg":"refused""#) && !refused.contains(secret), "{refused}");
        let Err(RendezvousError::TimedOut(why)) = lead.await.unwrap() else { panic!("the lead did not time out") };
        assert!(why.contains("without the rendezvous token") && why.contains("127.0.0.1:"), "{why}");
        assert!(!why.contains(secret), "{why}");
    }

    /// A peer that sends a line without end is read no further than MOST_READ: shard 0
    /// closes it at once, not at the registration timeout.
    #[tokio::test]
    async fn an_endless_line_is_cut_off() {
        let port = free_port();
        let lead = tokio::spawn(async move {
            agree(&member(0, 2, "a"), None, &format!("x:{port}"), Duration::from_millis(1500)).await
        });
        let mut stream = connect_when_listening(port).await;
        let (read, mut out) = stream.split();
        let mut lines = BufReader::new(read).lines();
        lines.next_line().await.unwrap().unwrap();
        let sent = Instant::now();
        let endless = vec![b'x'; MOST_READ as usize + 1];
        tokio::io::AsyncWriteExt::write_all(&mut out, &endless).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
        assert!(matches!(closed, Ok(Ok(None)) | Ok(Err(_))), "{closed:?}");
        assert!(sent.elapsed() < Duration::from_secs(2), "closed after {:?}", sent.elapsed());
        assert!(lead.await.unwrap().is_err());
    }
}
