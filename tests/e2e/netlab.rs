//! The multi-host lab: network namespaces that stand for machines, built by a test and
//! removed when it ends (a panic included).
//!
//! A `switch` namespace holds a bridge. Each host namespace, and the target namespace,
//! is joined to it by a veth pair (`eth0` inside, `to-<role>` on the bridge), all on one
//! private /24: host `i` has `10.99.<lab>.<10(i+1)>` as its primary address and the next
//! ones as extra source addresses, the target has `.100`. Every namespace but the switch
//! gets `tcp_rfc1337 = 1` (exact TIME_WAIT counts, see README) and the port range
//! [`PORT_RANGE`]. Labs are isolated from each other and from the host by their
//! namespaces, so overlapping subnets across test processes are harmless; names carry
//! the test process's pid and a serial, so parallel runs never share one. Nothing here
//! touches the host's own network or sysctls.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::support::{mosquitto_binary, output_within, raise_nofile, ss_states_in, TempDir};

/// ip_local_port_range in every lab namespace: 1,000 ports per source address, more
/// than any lab test holds from one address, narrow enough that a leak would show.
pub const PORT_RANGE: (u16, u16) = (40_000, 40_999);

/// The per-namespace sysctls every host and the target get.
const SYSCTLS: [(&str, &str); 2] = [("ipv4/tcp_rfc1337", "1"), ("ipv4/ip_local_port_range", "40000 40999")];

/// How long one `ip` or `sysctl` step may take.
const STEP: Duration = Duration::from_secs(10);

static SERIAL: AtomicU8 = AtomicU8::new(0);

/// A namespace of the lab that stands for a machine.
#[derive(Debug, Clone)]
pub struct Node {
    /// The network namespace's name (`ip netns list`).
    pub netns: String,
    /// Its addresses on the lab's /24, the primary first.
    pub addrs: Vec<Ipv4Addr>,
}

impl Node {
    pub fn addr(&self) -> Ipv4Addr {
        self.addrs[0]
    }

    /// The addresses as `sockcap run --sources` takes them.
    pub fn sources(&self) -> String {
        self.addrs.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",")
    }
}

/// The namespaces of one lab; every one of them is removed on drop, after the processes
/// still inside them are killed.
#[derive(Debug)]
pub struct Lab {
    /// The namespace holding the bridge `br0`.
    pub switch: String,
    pub hosts: Vec<Node>,
    pub target: Node,
    /// Every namespace made so far, for drop (also when building fails half-way).
    created: Vec<String>,
}

impl Lab {
    /// A switch, `hosts` host namespaces with `1 + extra_sources` addresses each, and a
    /// target namespace, all up and reachable from each other.
    pub fn new(hosts: usize, extra_sources: usize) -> Lab {
        // SAFETY: geteuid has no preconditions.
        assert!(unsafe { libc::geteuid() } == 0, "the lab needs root to make network namespaces");
        assert!((1..=8).contains(&hosts) && extra_sources <= 8, "the address plan fits 8 hosts of 9 addresses");
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("sockcap-lab-{}-{serial}", std::process::id());
        let addr = |last: usize| Ipv4Addr::new(10, 99, serial, last as u8);
        let mut lab = Lab {
            switch: format!("{prefix}-switch"),
            hosts: (0..hosts)
                .map(|i| Node {
                    netns: format!("{prefix}-h{i}"),
                    addrs: (0..=extra_sources).map(|j| addr(10 * (i + 1) + j)).collect(),
                })
                .collect(),
            target: Node { netns: format!("{prefix}-target"), addrs: vec![addr(100)] },
            created: Vec::new(),
        };
        let switch = lab.switch.clone();
        lab.add_netns(&switch);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        let nodes: Vec<(String, Node)> = (lab.hosts.iter().enumerate().map(|(i, h)| (format!("h{i}"), h.clone())))
            .chain([("target".to_string(), lab.target.clone())])
            .collect();
        for (role, node) in nodes {
            lab.add_netns(&node.netns);
            let port = format!("to-{role}");
            ip(&["-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &node.netns]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            for a in &node.addrs {
                ip(&["-n", &node.netns, "addr", "add", &format!("{a}/24"), "dev", "eth0"]);
            }
            ip(&["-n", &node.netns, "link", "set", "eth0", "up"]);
            for (key, value) in SYSCTLS {
                set_sysctl(&node.netns, key, value);
            }
        }
        lab.pin_neighbours();
        lab
    }

    /// Permanent ARP entries for every address of every other node: no connect waits
    /// on (or fails with EHOSTUNREACH after) a neighbour resolution a loaded machine
    /// answered late.
    fn pin_neighbours(&self) {
        let nodes: Vec<&Node> = self.hosts.iter().chain([&self.target]).collect();
        let macs: Vec<String> = nodes.iter().map(|n| mac_of_eth0(&n.netns)).collect();
        for node in &nodes {
            for (other, mac) in nodes.iter().zip(&macs).filter(|(o, _)| o.netns != node.netns) {
                for a in &other.addrs {
                    let a = a.to_string();
                    let neigh = ["-n", &node.netns, "neigh", "replace", &a, "lladdr", mac, "dev", "eth0"];
                    ip(&[&neigh[..], &["nud", "permanent"]].concat());
                }
            }
        }
    }

    fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// Every namespace of the lab.
    pub fn namespaces(&self) -> Vec<String> {
        self.created.clone()
    }

    /// `program` to be run inside `netns` (`ip netns exec`, which execs it: the child's
    /// pid is the program's).
    pub fn command(&self, netns: &str, program: impl AsRef<OsStr>) -> Command {
        assert!(self.created.iter().any(|n| n == netns), "{netns} is not a namespace of this lab");
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(program).stdin(Stdio::null());
        command
    }

    /// A sysctl under /proc/sys/net/ as `netns` sees it, e.g. `ipv4/tcp_rfc1337`.
    pub fn sysctl(&self, netns: &str, key: &str) -> String {
        let out = output_within(self.command(netns, "cat").arg(format!("/proc/sys/net/{key}")), STEP);
        assert!(out.status.success(), "reading {key} in {netns}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Sockets of `host` toward `target`, by state (sockcap's keys), as `ss` in the host's
    /// namespace sees them: destination `target`, source one of the host's addresses.
    pub fn client_states(&self, host: &Node, target: SocketAddrV4) -> BTreeMap<String, u64> {
        let sources = host.addrs.iter().map(|a| format!("src {a}")).collect::<Vec<_>>().join(" or ");
        ss_states_in(&host.netns, &format!("( dst {target} ) and ( {sources} )"))
    }

    /// [`Lab::client_states`] of established sockets, counted per source address.
    pub fn established_by_source(&self, host: &Node, target: SocketAddrV4) -> BTreeMap<Ipv4Addr, u64> {
        host.addrs
            .iter()
            .map(|a| {
                let states = ss_states_in(&host.netns, &format!("( dst {target} ) and ( src {a} )"));
                (*a, states.get("established").copied().unwrap_or(0))
            })
            .collect()
    }

    /// Sockets of the target's port in the target namespace, by state (the listener included).
    pub fn server_states(&self, target: SocketAddrV4) -> BTreeMap<String, u64> {
        ss_states_in(&self.target.netns, &format!("( src {target} )"))
    }

    /// Wait until something listens on `addr`'s port in `netns` (on `addr` or on all
    /// the namespace's addresses).
    pub fn wait_listening(&self, netns: &str, addr: SocketAddrV4, within: Duration) {
        let deadline = Instant::now() + within;
        while !ss_states_in(netns, &format!("( sport = :{} )", addr.port())).contains_key("listen") {
            assert!(Instant::now() < deadline, "nothing listened at {addr} in {netns} within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever still runs inside the lab was started by the test (or by its children,
        // such as sockcap's worker and serve processes): kill it by pid, then remove the
        // namespaces. Deleting the switch takes the veth pairs with it.
        for netns in &self.created {
            kill_inside(netns);
        }
        for netns in self.created.iter().rev() {
            let out = Command::new("ip").args(["netns", "delete", netns]).output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                eprintln!("could not remove network namespace {netns}: {out:?}");
            }
        }
    }
}

/// SIGKILL every process inside `netns` (`ip netns pids`), and wait (bounded) until they are gone.
fn kill_inside(netns: &str) {
    let pids = || -> Vec<i32> {
        let out = Command::new("ip").args(["netns", "pids", netns]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let inside = pids();
        if inside.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in inside {
            // SAFETY: kill(2) takes plain integers; the pid is a process inside our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The MAC address of `eth0` in `netns`.
fn mac_of_eth0(netns: &str) -> String {
    let out = output_within(Command::new("ip").args(["-n", netns, "-br", "link", "show", "dev", "eth0"]), STEP);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "eth0@if12  UP  ae:4f:...:01 <BROADCAST,...>"
    text.split_whitespace().nth(2).filter(|m| m.len() == 17).unwrap_or_else(|| panic!("no MAC in `{text}`")).to_string()
}

/// Run `ip ARGS`; panic with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = output_within(Command::new("ip").args(args), STEP);
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Write `value` to /proc/sys/net/`key` as `netns` sees it (tee, so no procps needed).
fn set_sysctl(netns: &str, key: &str, value: &str) {
    let mut tee = Command::new("ip")
        .args(["netns", "exec", netns, "tee", &format!("/proc/sys/net/{key}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec tee starts");
    std::io::Write::write_all(&mut tee.stdin.take().unwrap(), value.as_bytes()).expect("write the sysctl");
    let status = crate::support::wait_with_timeout(&mut tee, STEP);
    let mut stderr = String::new();
    let _ = tee.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(status.success(), "setting net.{key} = {value} in {netns}: {stderr}");
}

/// A process started in a lab namespace; killed by its pid and reaped on drop.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
}

impl Spawned {
    /// Start `command` (from [`Lab::command`]); a piped stderr is read by [`Spawned::wait`].
    pub fn start(command: &mut Command) -> Spawned {
        let child = command.spawn().unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
        Spawned { child }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait (at most `within`, else kill and panic) for its exit; its status and stderr.
    pub fn wait(&mut self, within: Duration) -> (ExitStatus, String) {
        let status = crate::support::wait_with_timeout(&mut self.child, within);
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr)
    }

    /// SIGTERM, so it can finish cleanly (flush a log, close its sockets).
    pub fn terminate(&self) {
        // SAFETY: kill(2) takes plain integers; the child is ours and not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mosquitto in the lab's target namespace, listening on the target's address with
/// its own config, logging each client's id to a file.
pub struct LabMosquitto {
    pub addr: SocketAddrV4,
    process: Spawned,
    dir: TempDir,
}

impl LabMosquitto {
    pub fn start(lab: &Lab, tag: &str, port: u16) -> LabMosquitto {
        raise_nofile();
        let dir = TempDir::new(&format!("lab-mosquitto-{tag}"));
        let addr = SocketAddrV4::new(lab.target.addr(), port);
        // To stderr, into a file: mosquitto started as root drops to its own user, which
        // may not write into the test's directory.
        let log = std::fs::File::create(dir.path("mosquitto.log")).expect("log file");
        let conf = dir.file(
            "mosquitto.conf",
            &format!(
                "listener {port} {}\nallow_anonymous true\npersistence false\nmax_connections -1\n\
                 connection_messages true\nlog_dest stderr\n",
                addr.ip(),
            ),
        );
        let process = Spawned::start(
            lab.command(&lab.target.netns, mosquitto_binary()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log),
        );
        lab.wait_listening(&lab.target.netns, addr, Duration::from_secs(10));
        LabMosquitto { addr, process, dir }
    }

    /// Stop it (SIGTERM: it writes out its log) and return the log.
    pub fn stop(mut self) -> String {
        self.process.terminate();
        let (status, stderr) = self.process.wait(Duration::from_secs(10));
        assert!(status.success(), "mosquitto exited with {status}: {stderr}");
        std::fs::read_to_string(self.dir.path("mosquitto.log")).expect("mosquitto's log")
    }
}

/// `sockcap serve` (the embedded target) in the lab's target namespace, on `port`.
#[derive(Debug)]
pub struct LabServe {
    pub addr: SocketAddrV4,
    _process: Spawned,
}

impl LabServe {
    pub fn start(lab: &Lab, port: u16) -> LabServe {
        let addr = SocketAddrV4::new(lab.target.addr(), port);
        let mut command = lab.command(&lab.target.netns, env!("CARGO_BIN_EXE_sockcap"));
        command.args(["serve", "--listen", &addr.to_string(), "--protocol", "mqtt"]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = Spawned::start(&mut command);
        // A thread reads the ready line (or EOF, if serve exits first) and then drains
        // stdout, so waiting for it is bounded and serve never writes into a closed pipe.
        let stdout = process.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
            let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            lines.for_each(drop);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if sockcap::embedded::parse_ready_line(&line) != Some(SocketAddr::V4(addr)) {
            process.terminate();
            let (status, stderr) = process.wait(Duration::from_secs(5));
            panic!("sockcap serve printed {line:?}, exit {status}\n--- stderr\n{stderr}");
        }
        LabServe { addr, _process: process }
    }
}
