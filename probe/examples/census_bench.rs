//! Census timings at scale: `cargo run --release -p sockcap-probe --example census_bench [PAIRS]`.
//!
//! Opens PAIRS loopback connections (default 15,000) and times one census of them through
//! sock_diag and through /proc/net/tcp, next to `ss -tan state established | wc -l`.
//!
//! One process may hold at most ~19,900 descriptors here, so the connections live in
//! child processes (this same binary, `--hold`), each holding at most 9,000 pairs (both
//! ends) on its own listening address 127.1.K.1, all on one port: a census of that port
//! counts every pair. Children exit when the bench closes their stdin.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use probe::{Filter, Prober};

const PAIRS_PER_CHILD: usize = 9_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hold") {
        let number = |i: usize| args[i].parse::<usize>().expect("--hold K PAIRS PORT");
        hold(number(2) as u8, number(3), number(4) as u16);
        return;
    }
    let pairs: usize = args.get(1).map_or(15_000, |n| n.parse().expect("PAIRS: a number"));

    // A port for every child's listener: free on 127.0.0.1, held here so it stays free.
    let anchor = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = anchor.local_addr().unwrap().port();
    let started = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    let mut left = pairs;
    for k in 1..=pairs.div_ceil(PAIRS_PER_CHILD) {
        let n = left.min(PAIRS_PER_CHILD);
        left -= n;
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--hold", &k.to_string(), &n.to_string(), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for child in &mut children {
        let mut ready = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "a holder failed");
    }
    println!(
        "{pairs} loopback connections ({} sockets) on port {port} in {} processes, opened in {:.2?}",
        2 * pairs,
        children.len(),
        started.elapsed()
    );

    let mut prober = Prober::new();
    let client = prober.census(&Filter::client(port)).unwrap();
    let server = prober.census(&Filter::server(port)).unwrap();
    println!(
        "census: client side {} established, server side {} sockets",
        client.get(probe::TcpState::Established),
        server.total()
    );
    assert_eq!(client.total() as usize, pairs);

    println!("{:<58} {:>10} {:>10}", "", "best", "median");
    time("sock_diag census, client side (remote port)", || prober.census(&Filter::client(port)).unwrap().total());
    time("sock_diag census, server side (local port)", || prober.census(&Filter::server(port)).unwrap().total());
    time("sock_diag census, every TCP socket", || prober.census(&Filter::default()).unwrap().total());
    time("sock_diag census, a port nobody uses", || prober.census(&Filter::server(1)).unwrap().total());
    time("sock_diag census with top 10 peers, server side", || {
        prober.census_with_peers(&Filter::server(port), 10).unwrap().states.total()
    });
    let mut proc_net = Prober::proc_net();
    time("/proc/net/tcp{,6} census, client side", || proc_net.census(&Filter::client(port)).unwrap().total());
    time("read /proc/net/tcp (bytes)", || std::fs::read("/proc/net/tcp").unwrap().len() as u64);
    time("ss -tan state established | wc -l", || shell("ss -tan state established | wc -l"));
    time(&format!("ss -Htan 'dport = :{port}' | wc -l"), || shell(&format!("ss -Htan 'dport = :{port}' | wc -l")));

    for child in &mut children {
        drop(child.stdin.take());
    }
    for mut child in children {
        child.wait().unwrap();
    }
}

/// Run `f` five times; print the best and median wall time and what it returned.
fn time(what: &str, mut f: impl FnMut() -> u64) {
    let mut runs: Vec<(Duration, u64)> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let out = f();
            (t.elapsed(), out)
        })
        .collect();
    runs.sort();
    println!("{what:<58} {:>10.2?} {:>10.2?}   ({})", runs[0].0, runs[2].0, runs[2].1);
}

fn shell(script: &str) -> u64 {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Child: listen on 127.1.K.1:PORT, open `pairs` connections to it, say "ready", and hold
/// them until stdin closes.
fn hold(k: u8, pairs: usize, port: u16) {
    raise_nofile();
    let listener = TcpListener::bind((Ipv4Addr::new(127, 1, k, 1), port)).unwrap();
    let mut held = Vec::with_capacity(2 * pairs);
    for _ in 0..pairs {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        held.push(client);
        held.push(server);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
}

/// Soft RLIMIT_NOFILE up to the hard limit.
fn raise_nofile() {
    let (_, hard) = probe::limits::nofile().expect("getrlimit");
    rlimit::Resource::NOFILE.set(hard, hard).expect("setrlimit");
}
