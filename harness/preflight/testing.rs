//! Test fixtures of the checks: scenarios in a few lines of TOML, and this project's
//! machine as an [`Environment`].

use std::net::SocketAddr;
use std::path::Path;

use probe::{Listeners, ListeningSocket, ProcessFds};

use super::environment::Environment;
use crate::descriptors::NofileRaise;
use crate::plan::Plan;
use crate::sources::{self, Sources};

/// A scenario: `phases` in TOML, after a header with `head` (target, sources...).
pub(super) fn plan(head: &str, phases: &str) -> Plan {
    let text = format!("name = \"t\"\nprotocol = \"tcp\"\n{head}\n{phases}");
    Plan::from_toml(Path::new("t.toml"), &text).unwrap()
}

pub(super) fn connect(count: u64, rate: u64) -> String {
    format!("[[phase]]\nconnect = {{ count = {count}, rate = {rate} }}\n")
}

pub(super) fn close(how: &str) -> String {
    format!("[[phase]]\nclose = {{ how = \"{how}\", rate = 10000 }}\n")
}

pub(super) const LOCAL: &str = "target = \"127.0.0.1:1883\"";

/// A mosquitto-like process on 127.0.0.1:1883 with `soft` descriptors.
pub(super) fn listeners(soft: u64) -> Listeners {
    let socket = ListeningSocket { local: "127.0.0.1:1883".parse().unwrap(), inode: 7, backlog: Some(100) };
    let process = ProcessFds { pid: 42, name: "mosquitto".into(), open: 20, limit_soft: soft, limit_hard: soft };
    Listeners { sockets: vec![socket], processes: vec![process], unowned: Vec::new() }
}

/// A remote target for the verdicts on a non-local target: an IPv6 documentation
/// address (RFC 3849, never routed). The checks are pure and their tests build their
/// `Environment` by hand: nothing ever connects to it.
pub(super) const REMOTE: &str = "[2001:db8::1]:1883";

/// This project's machine: 20,000 descriptors, 24 GiB, default sysctls; `plan`'s
/// sources as a run would pick them.
pub(super) fn env(plan: &Plan) -> Environment {
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
