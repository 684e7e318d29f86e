//! Preflight: can this machine run a scenario, and what gives first? Every budget a run
//! spends is checked against what the machine allows, before any socket opens:
//!
//! - **descriptors**: worker processes needed under RLIMIT_NOFILE (one process holds
//!   its soft limit minus [`descriptors::RESERVE`] connections), and the embedded target's.
//! - **file_max**: fs.file-max minus the files open now, against the descriptors the run
//!   adds on this machine (client sockets, and server sockets when the target is local).
//! - **ports**: source addresses × ephemeral ports per destination ([`crate::sources`]).
//! - **memory**: kernel and user memory per connection against MemAvailable (or the
//!   memory cgroup's limit less its use, when lower: a container's, a pod's).
//! - **time_wait**: TIME_WAIT sockets the closes leave at once against
//!   net.ipv4.tcp_max_tw_buckets.
//! - **accept_queue**: the target's listen backlog against the fastest connect rate.
//! - **target_descriptors**: the descriptors a local target's processes may still open.
//!
//! Each [`Check`] has a verdict, its numbers, the connection count at which it gives, and
//! a fix. [`assess`] is pure: [`Environment::read`] gathers the facts (limits, /proc, the
//! processes listening on the target's port) and the tests construct them.
//!
//! Two sides. A **client-side** check (descriptors, file_max, ports, memory, time_wait) is
//! about sockcap and this machine: when one blocks, the run cannot measure anything
//! worth having, and `sockcap run` refuses it (exit 3, [`Assessment::client_blocker`]).
//! A **target-side** check (accept_queue, target_descriptors) is about the server under
//! test: finding where it gives is what a capacity test is for, so `sockcap run` only
//! notes it, while `sockcap preflight` counts it in its verdict (exit 3 when anything
//! blocks) and names the first bottleneck on either side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::descriptors::{self, NofileRaise};
use crate::plan::{Action, CloseMode, Plan, Sysctl, TargetSpec};
/// `12,345`.
pub use crate::report::thousands as count;
use crate::sources::{self, Sources};

/// Kernel memory per loopback TCP socket: ~5.4 KB, measured on this project's machines
/// (slab usage over 10,000s of idle sockets; a minimal C client/server pair measured
/// ~9.7 KB per connection pair, i.e. both sockets).
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5_400;
/// sockcap's user memory per held connection: the budget the engine is built to
/// (1.5 KiB; ~1.1 KB measured for an idle tokio task per connection, see STYLE.md).
pub const HARNESS_BYTES_PER_CONNECTION: u64 = 1_536;
/// The embedded target's (`sockcap serve`, release build) user memory per held MQTT
/// connection: VmRSS grew by 1,117–1,152 bytes per connection over 10,000 idle
/// connections (each sent CONNECT and got CONNACK), measured on this project's machine.
pub const EMBEDDED_BYTES_PER_CONNECTION: u64 = 1_150;
/// User memory of one sockcap process before its first connection: an estimate
/// (`sockcap serve` idles at ~4.7 MB VmRSS; a run keeps three ~136 KiB histograms per
/// phase and its runtime on top).
pub const PROCESS_BASE_BYTES: u64 = 16 << 20;
/// Descriptors a target process keeps for itself (its log, config, listeners): mosquitto
/// under a 20,000 limit holds at most 19,992 clients here.
pub const TARGET_RESERVE: u64 = 10;
/// The accept queue should hold this many milliseconds of arrivals at the fastest rate.
pub const ACCEPT_QUEUE_MS: u64 = 10;
/// Memory use past this share of MemAvailable (percent) warns.
pub const MEMORY_WARN_PERCENT: u64 = 80;
/// How long a socket stays in TIME_WAIT (TCP_TIMEWAIT_LEN: fixed, not a sysctl).
const TIME_WAIT_SECS: f64 = 60.0;

/// What [`assess`] judges a scenario against.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where the clients connect; `None` for an embedded target not started yet.
    pub target: Option<SocketAddr>,
    /// Whether the target listens on this machine (always, for an embedded target): its
    /// sockets then spend this machine's files and memory too.
    pub target_local: bool,
    /// The client sources the run will use ([`Plan::effective_sources`]).
    pub sources: Sources,
    /// This process's RLIMIT_NOFILE after [`descriptors::raise_nofile`].
    pub nofile: NofileRaise,
    /// The sysctls in force in the run's network namespace.
    pub limits: probe::Limits,
    /// Worker processes forced with `--workers N`; `None` lets sockcap decide.
    pub workers: Option<u64>,
    /// Files open machine-wide now (fs.file-nr), against fs.file-max.
    pub files_open: Option<u64>,
    /// MemAvailable, or the memory cgroup's headroom when lower, bytes.
    pub mem_available: Option<u64>,
    /// TIME_WAIT sockets in the run's namespace now (/proc/net/sockstat).
    pub time_wait_now: Option<u64>,
    /// Whether this process may pass fs.file-max (CAP_SYS_ADMIN; taken as euid 0).
    pub privileged: bool,
    /// The local target's listening sockets and the processes holding them; `None` when
    /// not looked up (an embedded or remote target) or when the lookup failed.
    pub listeners: Option<probe::Listeners>,
}

impl Environment {
    /// Gather the facts for `plan` from this machine. `target` is the resolved target
    /// (`None`: an embedded one not started yet); `nofile` comes from
    /// [`descriptors::raise_nofile`]; `workers` is `--workers N`.
    pub fn read(plan: &Plan, target: Option<SocketAddr>, nofile: NofileRaise, workers: Option<u64>) -> Environment {
        let host = probe::Limits::read();
        let limits = match &plan.netns {
            Some(sysctls) => namespace_limits(&host, sysctls),
            None => host,
        };
        let ports = limits.ip_local_port_range.unwrap_or(sources::DEFAULT_RANGE);
        let toward = target.unwrap_or(EMBEDDED_PLACEHOLDER);
        let sources = Sources::new(plan.effective_sources(toward, ports), ports);
        let embedded = plan.target == TargetSpec::Embedded;
        let target_local = embedded || target.is_some_and(|t| crate::socket::is_local(t.ip()));
        let listeners = match target {
            Some(t) if target_local && !embedded => probe::listeners_for(t).ok(),
            _ => None,
        };
        let time_wait_now = match plan.netns {
            Some(_) => Some(0), // a new namespace starts empty
            None => probe::SockStat::read().ok().map(|s| s.tcp_tw),
        };
        Environment {
            target,
            target_local,
            sources,
            nofile,
            limits,
            workers,
            files_open: probe::limits::files_open(),
            mem_available: probe::limits::mem_available(),
            time_wait_now,
            // SAFETY: geteuid has no preconditions and cannot fail.
            privileged: unsafe { libc::geteuid() } == 0,
            listeners,
        }
    }
}

/// Where an embedded target not started yet will listen, for the port budget (its port
/// is chosen when it starts).
const EMBEDDED_PLACEHOLDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The sysctls of a private network namespace: the kernel's defaults for a new namespace
/// (the host's value where the default is sized from the machine), then the scenario's.
pub fn namespace_limits(host: &probe::Limits, sysctls: &[Sysctl]) -> probe::Limits {
    let mut limits = probe::Limits {
        ip_local_port_range: Some(sources::DEFAULT_RANGE),
        somaxconn: Some(4096),
        tcp_tw_reuse: Some(2),
        tcp_fin_timeout: Some(60),
        ..host.clone()
    };
    for sysctl in sysctls {
        let value = sysctl.value.as_str();
        match sysctl.name.as_str() {
            "net.ipv4.ip_local_port_range" => limits.ip_local_port_range = probe::limits::parse_port_range(value),
            "net.core.somaxconn" => limits.somaxconn = probe::limits::parse_number(value),
            "net.ipv4.tcp_max_tw_buckets" => limits.tcp_max_tw_buckets = probe::limits::parse_number(value),
            "net.ipv4.tcp_tw_reuse" => limits.tcp_tw_reuse = probe::limits::parse_number(value),
            "net.ipv4.tcp_fin_timeout" => limits.tcp_fin_timeout = probe::limits::parse_number(value),
            _ => {}
        }
    }
    limits
}

/// What a check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not checked: it does not apply, or a figure could not be read (the summary says).
    Skipped,
    Fits,
    /// The run can go, but something will not be as the scenario expects.
    Warning,
    /// The run cannot hold the scenario's connections.
    Blocks,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Skipped => "skipped",
            Verdict::Fits => "fits",
            Verdict::Warning => "warning",
            Verdict::Blocks => "blocks",
        }
    }
}

/// Whose limit a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// sockcap and this machine: a run refuses to start when one blocks.
    Client,
    /// The server under test: what a capacity test is there to find.
    Target,
}

/// The checks, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Descriptors,
    FileMax,
    Ports,
    Memory,
    TimeWait,
    AcceptQueue,
    TargetDescriptors,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Descriptors => "descriptors",
            CheckName::FileMax => "file_max",
            CheckName::Ports => "ports",
            CheckName::Memory => "memory",
            CheckName::TimeWait => "time_wait",
            CheckName::AcceptQueue => "accept_queue",
            CheckName::TargetDescriptors => "target_descriptors",
        }
    }
}

/// Named numbers, in the order they were added; serialized as a JSON object. Units are
/// in the names (`_bytes`, `_per_s`); the rest are counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures(pub Vec<(&'static str, u64)>);

impl Figures {
    fn add(&mut self, name: &'static str, value: Option<u64>) -> &mut Figures {
        if let Some(value) = value {
            self.0.push((name, value));
        }
        self
    }

    /// The figure called `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

impl Serialize for Figures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One budget, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub side: Side,
    pub verdict: Verdict,
    /// The most connections this budget allows, when it caps them (`None`: it does not,
    /// or only warns).
    pub gives_at: Option<u64>,
    /// What was found, with the numbers, in a sentence.
    pub summary: String,
    /// What to do about it (for warnings and blocks).
    pub fix: Option<String>,
    pub figures: Figures,
}

impl Check {
    fn new(name: CheckName, side: Side) -> Check {
        Check {
            name,
            side,
            verdict: Verdict::Fits,
            gives_at: None,
            summary: String::new(),
            fix: None,
            figures: Figures::default(),
        }
    }

    fn judged(mut self, verdict: Verdict, summary: String, fix: Option<String>) -> Check {
        self.verdict = verdict;
        self.summary = summary;
        self.fix = fix;
        self
    }
}

/// Every check of a scenario against an [`Environment`].
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// The most connections open at once ([`Plan::peak_connections`]).
    pub peak_connections: u64,
    /// The most held open at once, churn left out ([`Plan::peak_held`]).
    pub peak_held: u64,
    /// Client worker processes the run uses (forced, or as many as needed).
    pub workers: u64,
    /// Embedded target processes needed (0 when the target is not embedded).
    pub target_workers: u64,
    /// The local target's processes, as found listening on its port.
    pub target_processes: Vec<probe::ProcessFds>,
    pub checks: Vec<Check>,
}

impl Assessment {
    /// True when no check blocks.
    pub fn fits(&self) -> bool {
        !self.checks.iter().any(|c| c.verdict == Verdict::Blocks)
    }

    /// The first bottleneck: of the blocking checks on either side, the one that gives at
    /// the fewest connections (the first in report order on a tie).
    pub fn first_bottleneck(&self) -> Option<&Check> {
        first_blocking(self.checks.iter())
    }

    /// The first bottleneck among the client-side checks: what makes `sockcap run`
    /// refuse to start (exit 3). Target-side blocks are left to the run to find.
    pub fn client_blocker(&self) -> Option<&Check> {
        first_blocking(self.checks.iter().filter(|c| c.side == Side::Client))
    }

    /// The check called `name`.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

fn first_blocking<'a>(checks: impl Iterator<Item = &'a Check>) -> Option<&'a Check> {
    checks.filter(|c| c.verdict == Verdict::Blocks).min_by_key(|c| c.gives_at.unwrap_or(0))
}

/// Judge `plan` against `env`.
pub fn assess(plan: &Plan, env: &Environment) -> Assessment {
    let peak = plan.peak_connections();
    let embedded = plan.target == TargetSpec::Embedded;
    let needed = descriptors::workers_needed(peak, env.nofile.soft_after);
    let workers = env.workers.unwrap_or(needed).max(1);
    // As `sockcap run` starts it: each process raises its soft limit to the hard one.
    let target_workers = if embedded {
        u64::from(plan.embedded.workers.max(crate::embedded::workers_for(peak, env.nofile.hard)))
    } else {
        0
    };
    let target_processes = env.listeners.as_ref().map(|l| l.processes.clone()).unwrap_or_default();
    let ctx = Ctx { plan, env, peak, embedded, needed, workers, target_workers };
    let checks = vec![
        ctx.descriptors(),
        ctx.file_max(),
        ctx.ports(),
        ctx.memory(),
        ctx.time_wait(),
        ctx.accept_queue(),
        ctx.target_descriptors(),
    ];
    Assessment {
        peak_connections: peak,
        peak_held: plan.peak_held(),
        workers,
        target_workers,
        target_processes,
        checks,
    }
}

/// What every check reads.
struct Ctx<'a> {
    plan: &'a Plan,
    env: &'a Environment,
    peak: u64,
    embedded: bool,
    /// Client workers needed under the soft limit.
    needed: u64,
    /// Client workers used.
    workers: u64,
    target_workers: u64,
}

impl Ctx<'_> {
    /// Sockets each connection makes on this machine: the client's, and the server's when
    /// the target is local.
    fn sockets_per_connection(&self) -> u64 {
        if self.env.target_local {
            2
        } else {
            1
        }
    }

    fn target_text(&self) -> String {
        match self.env.target {
            Some(t) if self.embedded => format!("the embedded target at {t}"),
            Some(t) => t.to_string(),
            None => "the embedded target".to_string(),
        }
    }

    fn descriptors(&self) -> Check {
        let mut check = Check::new(CheckName::Descriptors, Side::Client);
        let nofile = &self.env.nofile;
        let per_process = descriptors::per_process(nofile.soft_after);
        check
            .figures
            .add("nofile_soft", Some(nofile.soft_after))
            .add("nofile_hard", Some(nofile.hard))
            .add("nr_open", self.env.limits.nr_open)
            .add("peak_connections", Some(self.peak))
            .add("connections_per_process", Some(per_process))
            .add("workers_needed", Some(self.needed))
            .add("workers", Some(self.workers))
            .add("target_workers", Some(self.target_workers));
        let target = if self.embedded {
            format!(
                "; the embedded target needs {} process{} too (each accepted connection is a descriptor there)",
                self.target_workers,
                plural(self.target_workers, "es")
            )
        } else {
            String::new()
        };
        let summary = format!(
            "{} connections at once: {} worker process{} of at most {} connections each (RLIMIT_NOFILE {} soft, {} hard){target}",
            count(self.peak),
            self.workers,
            plural(self.workers, "es"),
            count(per_process),
            count(nofile.soft_after),
            count(nofile.hard),
        );
        if self.workers < self.needed {
            check.gives_at = Some(self.workers * per_process);
            let raise = match self.env.limits.nr_open {
                Some(nr_open) if nr_open > nofile.hard => format!(
                    ", or raise the hard limit (`ulimit -Hn {}` as root, LimitNOFILE= for a service; fs.nr_open allows up to {})",
                    self.peak.div_ceil(self.workers) + descriptors::RESERVE,
                    count(nr_open)
                ),
                _ => String::new(),
            };
            let fix = format!("use `--workers auto` or at least `--workers {}`{raise}", self.needed);
            let summary = format!(
                "{} worker process{} {} at most {} connections, the scenario holds up to {}: {summary}",
                self.workers,
                plural(self.workers, "es"),
                if self.workers == 1 { "holds" } else { "hold" },
                count(self.workers * per_process),
                count(self.peak)
            );
            return check.judged(Verdict::Blocks, summary, Some(fix));
        }
        check.judged(Verdict::Fits, summary, None)
    }

    fn file_max(&self) -> Check {
        let mut check = Check::new(CheckName::FileMax, Side::Client);
        let (Some(file_max), Some(open)) = (self.env.limits.file_max, self.env.files_open) else {
            return check.judged(Verdict::Skipped, "fs.file-max or fs.file-nr could not be read".into(), None);
        };
        let per_connection = self.sockets_per_connection();
        let reserve = descriptors::RESERVE * (self.workers + self.target_workers);
        let adds = self.peak * per_connection + reserve;
        let free = file_max.saturating_sub(open);
        check
            .figures
            .add("file_max", Some(file_max))
            .add("files_open", Some(open))
            .add("files_free", Some(free))
            .add("files_needed", Some(adds))
            .add("files_per_connection", Some(per_connection));
        let gives_at = free.saturating_sub(reserve) / per_connection;
        check.gives_at = Some(gives_at);
        let sides = if per_connection == 2 { " (client and server side: the target is local)" } else { "" };
        let summary = format!(
            "the run adds {} open files{sides}; fs.file-max {} with {} open now leaves {}",
            count(adds),
            count(file_max),
            count(open),
            count(free)
        );
        if adds <= free {
            return check.judged(Verdict::Fits, summary, None);
        }
        // Leave a tenth more than the run needs, in round thousands.
        let wanted = (open + adds + adds / 10).div_ceil(1000) * 1000;
        let fix = format!(
            "`sysctl -w fs.file-max={wanted}` (and a file in /etc/sysctl.d to keep it), or lower the connect counts to at most {}",
            count(gives_at)
        );
        if self.env.privileged {
            // The kernel lets CAP_SYS_ADMIN pass fs.file-max (alloc_empty_file).
            let summary = format!(
                "{summary}: root may pass fs.file-max, but every other process on the machine then fails to open files (ENFILE)"
            );
            return check.judged(Verdict::Warning, summary, Some(fix));
        }
        check.judged(
            Verdict::Blocks,
            format!("{summary}: past {} connections, sockets fail with ENFILE", count(gives_at)),
            Some(fix),
        )
    }

    fn ports(&self) -> Check {
        let mut check = Check::new(CheckName::Ports, Side::Client);
        let held = self.plan.peak_held();
        let sources = &self.env.sources;
        let addrs = sources.addrs.len() as u64;
        let per_pair = held.div_ceil(addrs.max(1));
        let half = sources.range_size() / 2;
        check
            .figures
            .add("peak_held", Some(held))
            .add("source_addresses", Some(addrs))
            .add("ports_per_source", Some(sources.range_size()))
            .add("capacity", Some(sources.capacity()))
            .add("connections_per_pair", Some(per_pair));
        check.gives_at = Some(sources.capacity());
        let toward = self.env.target.unwrap_or(EMBEDDED_PLACEHOLDER);
        let from = if addrs == 0 {
            "one source address (the kernel's choice)".to_string()
        } else {
            format!("{addrs} source address{}", plural(addrs, "es"))
        };
        let summary = format!(
            "{} connections held at once to {}: {from} × {} ports (ip_local_port_range {}-{}) give {}; {} per (source, destination) pair",
            count(held),
            self.target_text(),
            count(sources.range_size()),
            sources.ports.0,
            sources.ports.1,
            count(sources.capacity()),
            count(per_pair)
        );
        if let Err(e) = sources::check_budget(held, sources, toward) {
            return check.judged(Verdict::Blocks, summary, Some(e.fix));
        }
        if addrs == 0 && held > half {
            let why = format!(
                "{summary}. Past half the range ({}) on one pair the kernel's port search slows from ~40,000 to \
                 ~1,200 connects/s (measured here)",
                count(half)
            );
            let fix =
                "give `sources` (addresses of this host's interfaces): sockcap then binds ports it chooses itself, \
                       which stays flat to the whole range";
            return check.judged(Verdict::Warning, why, Some(fix.into()));
        }
        check.judged(Verdict::Fits, summary, None)
    }

    fn memory(&self) -> Check {
        let mut check = Check::new(CheckName::Memory, Side::Client);
        let sockets = self.sockets_per_connection();
        let embedded = if self.embedded { EMBEDDED_BYTES_PER_CONNECTION } else { 0 };
        let per_connection = KERNEL_BYTES_PER_SOCKET * sockets + HARNESS_BYTES_PER_CONNECTION + embedded;
        let base = PROCESS_BASE_BYTES * (self.workers + self.target_workers);
        let estimate = self.peak * per_connection + base;
        check
            .figures
            .add("estimate_bytes", Some(estimate))
            .add("per_connection_bytes", Some(per_connection))
            .add("kernel_bytes_per_socket", Some(KERNEL_BYTES_PER_SOCKET))
            .add("sockets_per_connection", Some(sockets))
            .add("harness_bytes_per_connection", Some(HARNESS_BYTES_PER_CONNECTION))
            .add("embedded_bytes_per_connection", self.embedded.then_some(EMBEDDED_BYTES_PER_CONNECTION))
            .add("process_base_bytes", Some(base))
            .add("mem_available_bytes", self.env.mem_available);
        let target_note = if self.env.target_local && !self.embedded {
            " (the local target's own user memory is not counted: mosquitto's is ~0.72 KB per client)"
        } else {
            ""
        };
        let summary = format!(
            "{} connections × {} per connection ({} kernel × {sockets} socket{}, {} sockcap{}) + {} for {} process{} ≈ {}{target_note}",
            count(self.peak),
            bytes(per_connection),
            bytes(KERNEL_BYTES_PER_SOCKET),
            plural(sockets, "s"),
            bytes(HARNESS_BYTES_PER_CONNECTION),
            if self.embedded { format!(", {} embedded target", bytes(EMBEDDED_BYTES_PER_CONNECTION)) } else { String::new() },
            bytes(base),
            self.workers + self.target_workers,
            plural(self.workers + self.target_workers, "es"),
            bytes(estimate),
        );
        let Some(available) = self.env.mem_available else {
            return check.judged(Verdict::Skipped, format!("{summary}; the available memory could not be read"), None);
        };
        let gives_at = available.saturating_sub(base) / per_connection;
        check.gives_at = Some(gives_at);
        let summary = format!("{summary}, of {} available", bytes(available));
        let fix = format!(
            "lower the connect counts (at most {} fit), free memory, or run the target on another machine \
             (its sockets then cost memory there)",
            count(gives_at)
        );
        if estimate > available {
            return check.judged(Verdict::Blocks, summary, Some(fix));
        }
        if estimate > available / 100 * MEMORY_WARN_PERCENT {
            let summary = format!("{summary}: more than {MEMORY_WARN_PERCENT}% of it");
            return check.judged(Verdict::Warning, summary, Some(fix));
        }
        check.judged(Verdict::Fits, summary, None)
    }

    fn time_wait(&self) -> Check {
        let mut check = Check::new(CheckName::TimeWait, Side::Client);
        let (client, server) = time_wait_at_once(self.plan);
        // The server side's TIME_WAIT is on this machine only when the target is.
        let here = client + if self.env.target_local { server } else { 0 };
        let now = self.env.time_wait_now.unwrap_or(0);
        check
            .figures
            .add("tcp_max_tw_buckets", self.env.limits.tcp_max_tw_buckets)
            .add("time_wait_now", self.env.time_wait_now)
            .add("time_wait_client", Some(client))
            .add("time_wait_server", Some(server));
        let where_ = if self.env.target_local { "" } else { " (the server side's are on the target's machine)" };
        let summary = format!(
            "the closes leave up to {} TIME_WAIT at once on the client side and {} on the server side{where_}; {} now",
            count(client),
            count(server),
            count(now)
        );
        let Some(buckets) = self.env.limits.tcp_max_tw_buckets else {
            return check.judged(Verdict::Skipped, format!("{summary}; tcp_max_tw_buckets could not be read"), None);
        };
        let summary = format!("{summary}, against net.ipv4.tcp_max_tw_buckets {}", count(buckets));
        if here + now <= buckets {
            return check.judged(Verdict::Fits, summary, None);
        }
        let summary = format!(
            "{summary}: the kernel destroys the excess at once (\"TCP: time wait bucket table overflow\" in dmesg), \
             so a `time_wait >= N` expectation past {} fails",
            count(buckets.saturating_sub(now))
        );
        let fix = format!(
            "`sysctl -w net.ipv4.tcp_max_tw_buckets={}`, close with `rst`, or let TIME_WAIT drain (`sleep = \"60s\"`) between close phases",
            ((here + now) * 11 / 10).div_ceil(1000) * 1000
        );
        check.judged(Verdict::Warning, summary, Some(fix))
    }

    fn accept_queue(&self) -> Check {
        let mut check = Check::new(CheckName::AcceptQueue, Side::Target);
        let rate = fastest_connect_rate(self.plan);
        let arrivals = (rate * ACCEPT_QUEUE_MS as f64 / 1000.0).ceil() as u64;
        let somaxconn = self.env.limits.somaxconn;
        check
            .figures
            .add("somaxconn", somaxconn)
            .add("fastest_connect_rate_per_s", Some(rate.round() as u64))
            .add("arrivals_per_10ms", Some(arrivals));
        let (backlog, whose) = if self.embedded {
            if !self.plan.embedded.accept {
                let why = "the embedded target never accepts (`accept = false`): its queue fills on purpose";
                return check.judged(Verdict::Skipped, why.into(), None);
            }
            let backlog = u64::from(self.plan.embedded.backlog);
            (somaxconn.map_or(backlog, |s| backlog.min(s)), "the embedded target's backlog")
        } else if !self.env.target_local {
            let why = "the target is on another machine: its backlog (capped by its net.core.somaxconn) cannot be read from here";
            return check.judged(Verdict::Skipped, why.into(), None);
        } else {
            let queues: Vec<u64> =
                self.env.listeners.iter().flat_map(|l| &l.sockets).filter_map(|s| s.backlog.map(u64::from)).collect();
            if queues.is_empty() {
                let why = "no listening socket with a known backlog was found on the target's port";
                return check.judged(Verdict::Skipped, why.into(), None);
            }
            // SO_REUSEPORT listeners each have their own queue; arrivals are spread over them.
            (queues.iter().sum(), "the target's listen backlog")
        };
        check.figures.add("backlog", Some(backlog));
        let summary = format!(
            "{whose} is {} (net.core.somaxconn {}); the fastest connect rate, {}/s, brings {} connections every {ACCEPT_QUEUE_MS} ms",
            count(backlog),
            somaxconn.map_or("unknown".to_string(), count),
            count(rate.round() as u64),
            count(arrivals)
        );
        if backlog >= arrivals {
            return check.judged(Verdict::Fits, summary, None);
        }
        let summary = format!(
            "{summary}: a stall of {ACCEPT_QUEUE_MS} ms overflows the queue, SYNs are dropped and retried after 1 s, 3 s \
             (`kernel.ListenOverflows` > 0, connect latency past 1 s). mosquitto's fixed backlog of 100 overflowed at \
             20,000 connects/s here"
        );
        let fix = if self.embedded {
            format!(
                "set `[embedded] backlog` to at least {} (and `sysctl -w net.core.somaxconn={}`, which caps it), or lower the rate to {}/s",
                count(arrivals),
                arrivals,
                count(backlog * 1000 / ACCEPT_QUEUE_MS)
            )
        } else {
            format!(
                "raise the target's listen backlog to at least {} (and net.core.somaxconn, which caps it), or lower the connect rate to {}/s",
                count(arrivals),
                count(backlog * 1000 / ACCEPT_QUEUE_MS)
            )
        };
        check.judged(Verdict::Warning, summary, Some(fix))
    }

    fn target_descriptors(&self) -> Check {
        let mut check = Check::new(CheckName::TargetDescriptors, Side::Target);
        if self.embedded {
            let per_process = descriptors::per_process(self.env.nofile.soft_after);
            check
                .figures
                .add("target_workers", Some(self.target_workers))
                .add("connections_per_process", Some(per_process));
            let summary = format!(
                "the embedded target runs {} process{} of at most {} connections each (they inherit RLIMIT_NOFILE {})",
                self.target_workers,
                plural(self.target_workers, "es"),
                count(per_process),
                count(self.env.nofile.soft_after)
            );
            return check.judged(Verdict::Fits, summary, None);
        }
        let target = self.target_text();
        if !self.env.target_local {
            let why = format!("{target} is on another machine: its descriptor limit cannot be read from here");
            return check.judged(Verdict::Skipped, why, None);
        }
        let Some(listeners) = &self.env.listeners else {
            let why = format!("the processes listening at {target} could not be looked up");
            return check.judged(Verdict::Skipped, why, None);
        };
        if listeners.sockets.is_empty() {
            let why = format!("nothing listens at {target}: the run will get `refused`");
            return check.judged(Verdict::Warning, why, Some("start the target first".into()));
        }
        if listeners.processes.is_empty() {
            let why = format!(
                "{} socket{} listen{} at {target}, but no process holding {} could be read",
                listeners.sockets.len(),
                plural(listeners.sockets.len() as u64, "s"),
                if listeners.sockets.len() == 1 { "s" } else { "" },
                if listeners.sockets.len() == 1 { "it" } else { "them" }
            );
            let fix = "run preflight as root (or as the target's user) to read its descriptors";
            return check.judged(Verdict::Warning, why, Some(fix.into()));
        }
        let capacity: u64 = listeners.processes.iter().map(|p| p.headroom().saturating_sub(TARGET_RESERVE)).sum();
        let soft = listeners.processes.iter().map(|p| p.limit_soft).min().unwrap_or(0);
        let open: u64 = listeners.processes.iter().map(|p| p.open).sum();
        check
            .figures
            .add("target_processes", Some(listeners.processes.len() as u64))
            .add("target_nofile_soft", Some(soft))
            .add("target_open", Some(open))
            .add("target_can_accept", Some(capacity))
            .add("peak_connections", Some(self.peak));
        check.gives_at = Some(capacity);
        let each: Vec<String> = listeners
            .processes
            .iter()
            .map(|p| format!("{} (pid {}): {} open of {}", p.name, p.pid, count(p.open), limit(p.limit_soft)))
            .collect();
        let summary = format!(
            "{}; {} can accept about {} more connections ({TARGET_RESERVE} descriptors kept per process), the scenario holds up to {}",
            each.join(", "),
            if listeners.processes.len() == 1 { "it" } else { "together they" },
            count(capacity),
            count(self.peak)
        );
        if self.peak <= capacity {
            return check.judged(Verdict::Fits, summary, None);
        }
        let per_process = listeners.processes.len() as u64;
        let wanted = (self.peak.div_ceil(per_process) + TARGET_RESERVE + 100).div_ceil(1000) * 1000;
        let fix = format!(
            "raise the target's descriptor limit to at least {wanted} (LimitNOFILE={wanted} in its systemd unit, or \
             `ulimit -n {wanted}` in the shell that starts it), or run more target processes on the port \
             (SO_REUSEPORT). Past its limit mosquitto accepts and drops at once: clients see EOF before CONNACK \
             (under 20,000 it holds at most ~19,990 clients)"
        );
        check.judged(Verdict::Blocks, summary, Some(fix))
    }
}

/// TIME_WAIT sockets the scenario leaves at once: (client side, server side). Client-first
/// closes (`fin`, `half-close`) leave them on the client, `mqtt-disconnect` on the server
/// (the broker closes first), `rst` nowhere. A churn leaves up to a minute's cycles; a
/// hold or sleep of a minute or more lets them drain. An upper bound: the time closes
/// themselves take is not counted.
pub fn time_wait_at_once(plan: &Plan) -> (u64, u64) {
    let (mut held, mut client, mut server) = (0u64, 0u64, 0u64);
    let (mut max_client, mut max_server) = (0u64, 0u64);
    let drained = |d: std::time::Duration| d.as_secs_f64() >= TIME_WAIT_SECS;
    for phase in &plan.phases {
        let (how, n) = match &phase.action {
            Action::Connect(c) => {
                held += c.count;
                continue;
            }
            Action::Close(c) => {
                let n = c.amount.of(held);
                held -= n;
                (c.how, n)
            }
            Action::Churn(c) => (c.how, c.count.min((c.rate * TIME_WAIT_SECS).ceil() as u64)),
            Action::Hold(d) | Action::Sleep(d) => {
                if drained(*d) {
                    (client, server) = (0, 0);
                }
                continue;
            }
        };
        match how {
            CloseMode::Fin | CloseMode::HalfClose => client += n,
            CloseMode::MqttDisconnect => server += n,
            CloseMode::Rst => {}
        }
        max_client = max_client.max(client);
        max_server = max_server.max(server);
    }
    (max_client, max_server)
}

/// The fastest connect rate of any phase (connects and churn cycles), per second.
pub fn fastest_connect_rate(plan: &Plan) -> f64 {
    plan.phases
        .iter()
        .map(|p| match &p.action {
            Action::Connect(c) => c.rate,
            Action::Churn(c) => c.rate,
            _ => 0.0,
        })
        .fold(0.0, f64::max)
}

/// A limit, `unlimited` for RLIM_INFINITY.
fn limit(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        count(n)
    }
}

/// `10.5 KB`, `1.2 GB` (powers of 1000, as the measured figures are given).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} KB", n / 1e3),
        n => format!("{n} B"),
    }
}

fn plural(n: u64, suffix: &'static str) -> &'static str {
    if n == 1 {
        ""
    } else {
        suffix
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use probe::{Listeners, ListeningSocket, ProcessFds};

    use super::*;

    /// A scenario: `phases` in TOML, after a header with `head` (target, sources...).
    fn plan(head: &str, phases: &str) -> Plan {
        let text = format!("name = \"t\"\nprotocol = \"tcp\"\n{head}\n{phases}");
        Plan::from_toml(Path::new("t.toml"), &text).unwrap()
    }

    fn connect(count: u64, rate: u64) -> String {
        format!("[[phase]]\nconnect = {{ count = {count}, rate = {rate} }}\n")
    }

    fn close(how: &str) -> String {
        format!("[[phase]]\nclose = {{ how = \"{how}\", rate = 10000 }}\n")
    }

    const LOCAL: &str = "target = \"127.0.0.1:1883\"";

    /// A mosquitto-like process on 127.0.0.1:1883 with `soft` descriptors.
    fn listeners(soft: u64) -> Listeners {
        let socket = ListeningSocket { local: "127.0.0.1:1883".parse().unwrap(), inode: 7, backlog: Some(100) };
        let process = ProcessFds { pid: 42, name: "mosquitto".into(), open: 20, limit_soft: soft, limit_hard: soft };
        Listeners { sockets: vec![socket], processes: vec![process], unowned: Vec::new() }
    }

    /// A remote target for the verdicts on a non-local target: an IPv6 documentation
    /// address (RFC 3849, never routed). `assess` is pure and these tests build their
    /// `Environment` by hand: nothing ever connects to it.
    const REMOTE: &str = "[2001:db8::1]:1883";

    /// This project's machine: 20,000 descriptors, 24 GiB, default sysctls; `plan`'s
    /// sources as a run would pick them.
    fn env(plan: &Plan) -> Environment {
        let target: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let limits = probe::Limits {
            nofile_soft: Some(20_000),
            nofile_hard: Some(20_000),
            nr_open: Some(1_048_576),
            file_max: Some(2_470_938),
            ip_local_port_range: Some(sources::DEFAULT_RANGE),
            tcp_tw_reuse: Some(2),
            tcp_max_tw_buckets: Some(131_072),
            somaxconn: Some(4096),
            tcp_fin_timeout: Some(60),
        };
        Environment {
            target: Some(target),
            target_local: true,
            sources: Sources::new(plan.effective_sources(target, sources::DEFAULT_RANGE), sources::DEFAULT_RANGE),
            nofile: NofileRaise { soft_before: 1024, soft_after: 20_000, hard: 20_000 },
            limits,
            workers: None,
            files_open: Some(1_000),
            mem_available: Some(23 << 30),
            time_wait_now: Some(0),
            privileged: false,
            listeners: Some(listeners(1_000_000)),
        }
    }

    fn verdict(a: &Assessment, name: CheckName) -> Verdict {
        a.check(name).unwrap().verdict
    }

    #[test]
    fn a_modest_scenario_fits() {
        let plan = plan(LOCAL, &(connect(10_000, 1_000) + &close("rst")));
        let a = assess(&plan, &env(&plan));
        assert!(a.fits(), "{a:#?}");
        assert!(a.checks.iter().all(|c| c.verdict == Verdict::Fits), "{a:#?}");
        assert_eq!((a.peak_connections, a.workers, a.target_workers), (10_000, 1, 0));
        assert!(a.first_bottleneck().is_none() && a.client_blocker().is_none());
        let files = a.check(CheckName::FileMax).unwrap();
        // client and server sockets, and a reserve for the one worker
        assert_eq!(files.figures.get("files_needed"), Some(20_100));
        let target = a.check(CheckName::TargetDescriptors).unwrap();
        assert_eq!(target.gives_at, Some(1_000_000 - 20 - TARGET_RESERVE));
    }

    #[test]
    fn more_connections_than_one_process_holds_take_workers() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let a = assess(&plan, &env(&plan));
        assert_eq!(a.workers, 3);
        assert_eq!(verdict(&a, CheckName::Descriptors), Verdict::Fits);
        assert!(a.check(CheckName::Descriptors).unwrap().summary.contains("3 worker processes"));
        // an embedded target needs its own processes, and memory for both sides
        let embedded = self::plan("target = \"embedded\"", &connect(50_000, 10_000));
        let a = assess(&embedded, &Environment { target: None, listeners: None, ..env(&embedded) });
        assert_eq!((a.workers, a.target_workers), (3, 3));
        assert_eq!(verdict(&a, CheckName::TargetDescriptors), Verdict::Fits);
        let memory = a.check(CheckName::Memory).unwrap();
        let per_connection = 2 * KERNEL_BYTES_PER_SOCKET + HARNESS_BYTES_PER_CONNECTION + EMBEDDED_BYTES_PER_CONNECTION;
        assert_eq!(memory.figures.get("per_connection_bytes"), Some(per_connection));
    }

    #[test]
    fn forced_too_few_workers_block() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let a = assess(&plan, &Environment { workers: Some(2), ..env(&plan) });
        let check = a.check(CheckName::Descriptors).unwrap();
        assert_eq!(check.verdict, Verdict::Blocks);
        assert_eq!(check.gives_at, Some(2 * 19_900));
        assert!(check.fix.as_deref().unwrap().contains("--workers 3"), "{check:?}");
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Descriptors);
        assert!(!a.fits());
    }

    #[test]
    fn too_many_connections_for_the_ports_block() {
        let plan = plan(&format!("{LOCAL}\nsources = [\"127.0.0.2\"]"), &connect(40_000, 10_000));
        let a = assess(&plan, &env(&plan));
        let ports = a.check(CheckName::Ports).unwrap();
        assert_eq!(ports.verdict, Verdict::Blocks);
        assert_eq!(ports.gives_at, Some(28_232));
        assert!(ports.fix.as_deref().unwrap().contains("at least 2 source addresses"), "{ports:?}");
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::Ports);
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Ports);
        // without `sources`, a loopback target is spread over enough 127.0.0.x addresses
        let auto = self::plan(LOCAL, &connect(40_000, 10_000));
        let a = assess(&auto, &env(&auto));
        assert_eq!(verdict(&a, CheckName::Ports), Verdict::Fits);
        assert_eq!(a.check(CheckName::Ports).unwrap().figures.get("source_addresses"), Some(3));
    }

    #[test]
    fn one_pair_past_half_the_range_warns() {
        let plan = plan(&format!("target = \"{REMOTE}\""), &connect(20_000, 1_000));
        let e =
            Environment { target: Some(REMOTE.parse().unwrap()), target_local: false, listeners: None, ..env(&plan) };
        let a = assess(&plan, &Environment { sources: Sources::new(Vec::new(), sources::DEFAULT_RANGE), ..e });
        let ports = a.check(CheckName::Ports).unwrap();
        assert_eq!(ports.verdict, Verdict::Warning);
        assert!(ports.summary.contains("~1,200 connects/s"), "{ports:?}");
        // a remote target: one socket per connection here, and nothing to read of its side
        assert_eq!(a.check(CheckName::FileMax).unwrap().figures.get("files_per_connection"), Some(1));
        assert_eq!(verdict(&a, CheckName::TargetDescriptors), Verdict::Skipped);
        assert_eq!(verdict(&a, CheckName::AcceptQueue), Verdict::Skipped);
    }

    #[test]
    fn file_max_blocks_unless_root() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let e = Environment { limits: probe::Limits { file_max: Some(100_000), ..env(&plan).limits }, ..env(&plan) };
        let e = Environment { files_open: Some(20_000), ..e };
        let a = assess(&plan, &e);
        let files = a.check(CheckName::FileMax).unwrap();
        assert_eq!(files.verdict, Verdict::Blocks);
        // 80,000 free, 300 kept for the 3 workers, 2 files per loopback connection
        assert_eq!(files.gives_at, Some(39_850));
        assert!(files.fix.as_deref().unwrap().contains("sysctl -w fs.file-max=131000"), "{files:?}");
        assert_eq!(a.client_blocker().unwrap().name, CheckName::FileMax);
        let root = assess(&plan, &Environment { privileged: true, ..e });
        assert_eq!(verdict(&root, CheckName::FileMax), Verdict::Warning);
        assert!(root.fits());
    }

    #[test]
    fn memory_blocks_past_what_is_available_and_warns_near_it() {
        let plan = plan(LOCAL, &connect(10_000, 1_000));
        // 10,000 × (2 × 5.4 KB + 1.5 KiB) + 16 MiB ≈ 140 MB
        let a = assess(&plan, &Environment { mem_available: Some(100_000_000), ..env(&plan) });
        let memory = a.check(CheckName::Memory).unwrap();
        assert_eq!(memory.verdict, Verdict::Blocks);
        assert_eq!(memory.figures.get("estimate_bytes"), Some(10_000 * 12_336 + (16 << 20)));
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Memory);
        let near = assess(&plan, &Environment { mem_available: Some(160_000_000), ..env(&plan) });
        assert_eq!(verdict(&near, CheckName::Memory), Verdict::Warning);
        assert!(near.fits());
    }

    #[test]
    fn time_wait_past_the_buckets_warns() {
        let plan = plan(LOCAL, &(connect(20_000, 10_000) + &close("fin")));
        let few = probe::Limits { tcp_max_tw_buckets: Some(10_000), ..env(&plan).limits };
        let a = assess(&plan, &Environment { limits: few.clone(), ..env(&plan) });
        let tw = a.check(CheckName::TimeWait).unwrap();
        assert_eq!(tw.verdict, Verdict::Warning);
        assert!(tw.summary.contains("time wait bucket table overflow"), "{tw:?}");
        assert!(tw.fix.as_deref().unwrap().contains("tcp_max_tw_buckets=22000"), "{tw:?}");
        assert!(a.fits(), "a warning does not block");
        // rst leaves none
        let rst = self::plan(LOCAL, &(connect(20_000, 10_000) + &close("rst")));
        assert_eq!(
            verdict(&assess(&rst, &Environment { limits: few.clone(), ..env(&rst) }), CheckName::TimeWait),
            Verdict::Fits
        );
        // the server side's TIME_WAIT of a remote target are not on this machine
        let mqtt = Plan::from_toml(
            Path::new("t.toml"),
            &format!(
                "name = \"t\"\nprotocol = \"mqtt\"\ntarget = \"{REMOTE}\"\n{}{}",
                connect(20_000, 10_000),
                close("mqtt-disconnect")
            ),
        )
        .unwrap();
        assert_eq!(time_wait_at_once(&mqtt), (0, 20_000));
        let remote =
            Environment { target: Some(REMOTE.parse().unwrap()), target_local: false, limits: few, ..env(&mqtt) };
        assert_eq!(verdict(&assess(&mqtt, &remote), CheckName::TimeWait), Verdict::Fits);
    }

    #[test]
    fn time_wait_drains_over_a_minute() {
        let churn = "[[phase]]\nchurn = { rate = 1000, duration = \"5m\" }\n";
        let sleep = |d: &str| format!("[[phase]]\nsleep = \"{d}\"\n");
        let plan = self::plan(LOCAL, &(connect(5_000, 1_000) + &close("fin") + &sleep("10s") + churn));
        // 5,000 closed, then a minute of churn (60,000) before the first of it drains
        assert_eq!(time_wait_at_once(&plan), (65_000, 0));
        let plan = self::plan(LOCAL, &(connect(5_000, 1_000) + &close("fin") + &sleep("60s") + churn));
        assert_eq!(time_wait_at_once(&plan), (60_000, 0));
    }

    #[test]
    fn a_short_accept_queue_warns() {
        let plan = plan(LOCAL, &connect(20_000, 20_000));
        let a = assess(&plan, &env(&plan));
        let queue = a.check(CheckName::AcceptQueue).unwrap();
        assert_eq!(queue.verdict, Verdict::Warning);
        assert_eq!(queue.figures.get("arrivals_per_10ms"), Some(200));
        assert_eq!(queue.figures.get("backlog"), Some(100));
        assert!(queue.summary.contains("mosquitto's fixed backlog of 100"), "{queue:?}");
        // the embedded target's backlog is the scenario's, capped by somaxconn
        let embedded = self::plan("target = \"embedded\"\n[embedded]\nbacklog = 100", &connect(20_000, 20_000));
        let a = assess(&embedded, &Environment { target: None, listeners: None, ..env(&embedded) });
        assert_eq!(verdict(&a, CheckName::AcceptQueue), Verdict::Warning);
        let capped = self::plan("target = \"embedded\"", &connect(20_000, 20_000));
        let a = assess(&capped, &Environment { target: None, listeners: None, ..env(&capped) });
        let queue = a.check(CheckName::AcceptQueue).unwrap();
        assert_eq!((queue.verdict, queue.figures.get("backlog")), (Verdict::Fits, Some(4096)));
    }

    #[test]
    fn the_targets_descriptor_limit_is_the_first_bottleneck_but_not_the_clients() {
        let plan = plan(LOCAL, &connect(2_000, 1_000));
        let a = assess(&plan, &Environment { listeners: Some(listeners(1024)), ..env(&plan) });
        let target = a.check(CheckName::TargetDescriptors).unwrap();
        assert_eq!(target.verdict, Verdict::Blocks);
        assert_eq!(target.gives_at, Some(1024 - 20 - TARGET_RESERVE));
        assert!(target.summary.contains("mosquitto (pid 42): 20 open of 1,024"), "{target:?}");
        assert!(target.fix.as_deref().unwrap().contains("LimitNOFILE=3000"), "{target:?}");
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::TargetDescriptors);
        assert!(a.client_blocker().is_none(), "a run is not refused for the target's limit");
        assert!(!a.fits());

        // both sides blocking: the one that gives at fewer connections comes first
        let both = self::plan(&format!("{LOCAL}\nsources = [\"127.0.0.2\"]"), &connect(40_000, 1_000));
        let a = assess(&both, &Environment { listeners: Some(listeners(20_000)), ..env(&both) });
        assert_eq!(a.first_bottleneck().unwrap().name, CheckName::TargetDescriptors);
        assert_eq!(a.client_blocker().unwrap().name, CheckName::Ports);
    }

    #[test]
    fn a_target_nobody_serves_warns() {
        let plan = plan(LOCAL, &connect(100, 100));
        let a = assess(&plan, &Environment { listeners: Some(Listeners::default()), ..env(&plan) });
        let target = a.check(CheckName::TargetDescriptors).unwrap();
        assert_eq!(target.verdict, Verdict::Warning);
        assert!(target.summary.contains("nothing listens at 127.0.0.1:1883") && target.summary.contains("refused"));
        let mut hidden = listeners(1024);
        hidden.processes.clear();
        let a = assess(&plan, &Environment { listeners: Some(hidden), ..env(&plan) });
        assert!(a.check(CheckName::TargetDescriptors).unwrap().fix.as_deref().unwrap().contains("root"));
    }

    #[test]
    fn a_private_namespace_starts_from_the_kernels_defaults() {
        let host =
            probe::Limits { ip_local_port_range: Some((1024, 65000)), somaxconn: Some(128), ..Default::default() };
        let sysctls = [Sysctl { name: "net.ipv4.ip_local_port_range".into(), value: "40000 40499".into() }];
        let ns = namespace_limits(&host, &sysctls);
        assert_eq!(ns.ip_local_port_range, Some((40_000, 40_499)));
        assert_eq!(ns.somaxconn, Some(4096));
    }

    #[test]
    fn json_names_every_check() {
        let plan = plan(LOCAL, &connect(100, 100));
        let a = assess(&plan, &env(&plan));
        let json = serde_json::to_value(&a).unwrap();
        let names: Vec<&str> = json["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["descriptors", "file_max", "ports", "memory", "time_wait", "accept_queue", "target_descriptors"]
        );
        assert_eq!(json["checks"][0]["figures"]["peak_connections"], 100);
        assert_eq!(json["checks"][0]["verdict"], "fits");
        assert_eq!(json["target_processes"][0]["name"], "mosquitto");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(28_232), "28,232");
        assert_eq!(count(999), "999");
        assert_eq!(bytes(10_800), "10.8 KB");
        assert_eq!(bytes(23 << 30), "24.7 GB");
    }
}
