//! What a `sockcap serve` process says, and to whom: that it listens (once every
//! worker process listens too), and at exit what it did.
//!
//! Started by a person, it says so in human lines: the [`ready_line`] on stdout
//! and the [`summary_line`] on stderr. Started by another sockcap process (a
//! run's [`EmbeddedTarget`](super::EmbeddedTarget), the parent of
//! `serve --workers N`), with [`PARENT_ENV`] set, it writes the same two
//! messages as JSON lines ([`ServeMsg`]) on its stdout, a pipe its parent reads
//! with [`ChildMessages`]; its stderr then carries only what a person should
//! read.

use std::io::{self, Write};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::options::ServeSummary;
use crate::protocol::Protocol;

/// Set (to `1`) in the environment of a `sockcap serve` whose parent reads its
/// messages as JSON lines.
pub const PARENT_ENV: &str = "SOCKCAP_SERVE_TO_PARENT";

/// A `sockcap serve` process → the process that started it, one JSON line each
/// on its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ServeMsg {
    /// Listening on `addr` (port 0 resolved), every worker process too. Over TLS with a
    /// certificate it made, `tls_ca` is the CA file for clients to trust.
    Ready {
        addr: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_ca: Option<std::path::PathBuf>,
    },
    /// At exit: what it did, with its workers.
    Summary(TargetSummary),
}

/// What the processes of one target did, added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// The figures of the `reported` processes.
    pub summary: ServeSummary,
    /// The processes the target ran: itself and its workers.
    pub processes: u32,
    /// Those that said their figures (one killed or crashed says nothing).
    pub reported: u32,
}

/// Who reads what this `sockcap serve` process says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    /// A person: human lines.
    Person,
    /// The sockcap process that started this one: [`ServeMsg`] JSON lines.
    Parent,
}

impl Audience {
    /// [`Audience::Parent`] when [`PARENT_ENV`] is set, else [`Audience::Person`].
    pub fn of_this_process() -> Audience {
        match std::env::var_os(PARENT_ENV) {
            Some(_) => Audience::Parent,
            None => Audience::Person,
        }
    }

    /// Makes `command`, a `sockcap serve`, talk to this process in JSON lines.
    pub fn make_parent(command: &mut Command) {
        command.env(PARENT_ENV, "1");
    }

    /// Says that the target listens on `addr`, on stdout.
    pub fn say_ready(self, addr: SocketAddr, protocol: Protocol, tls_ca: Option<&std::path::Path>) -> io::Result<()> {
        match self {
            Audience::Person => match tls_ca {
                None => print_line(&ready_line(addr, protocol)),
                Some(ca) => print_line(&format!("{} over TLS, CA {}", ready_line(addr, protocol), ca.display())),
            },
            Audience::Parent => print_msg(&ServeMsg::Ready { addr, tls_ca: tls_ca.map(Into::into) }),
        }
    }

    /// Says what the target did: on stderr for a person, on stdout for a parent.
    pub fn say_summary(self, summary: TargetSummary) -> io::Result<()> {
        match self {
            Audience::Person => {
                crate::stderr::line(summary_line(&summary));
                Ok(())
            }
            Audience::Parent => print_msg(&ServeMsg::Summary(summary)),
        }
    }
}

fn print_msg(msg: &ServeMsg) -> io::Result<()> {
    print_line(&serde_json::to_string(msg).map_err(io::Error::other)?)
}

fn print_line(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// The messages a child `sockcap serve` writes on its stdout, read in order.
#[derive(Debug)]
pub(super) struct ChildMessages<R> {
    stdout: BufReader<R>,
    line: String,
}

/// The reading buffer per child: the messages are short, and a parent may
/// hold a thousand children.
const READ_BUFFER: usize = 512;

impl<R: AsyncRead + Unpin> ChildMessages<R> {
    pub fn new(stdout: R) -> Self {
        ChildMessages { stdout: BufReader::with_capacity(READ_BUFFER, stdout), line: String::new() }
    }

    /// The next message, skipping lines that are not one; `None` at EOF.
    pub async fn next(&mut self) -> io::Result<Option<ServeMsg>> {
        loop {
            self.line.clear();
            if self.stdout.read_line(&mut self.line).await? == 0 {
                return Ok(None);
            }
            if let Ok(msg) = serde_json::from_str(&self.line) {
                return Ok(Some(msg));
            }
        }
    }

    /// The address (and TLS CA file) of the next [`ServeMsg::Ready`]; `None` at EOF.
    pub async fn ready(&mut self) -> io::Result<Option<(SocketAddr, Option<std::path::PathBuf>)>> {
        while let Some(msg) = self.next().await? {
            if let ServeMsg::Ready { addr, tls_ca } = msg {
                return Ok(Some((addr, tls_ca)));
            }
        }
        Ok(None)
    }

    /// The next [`ServeMsg::Summary`]; `None` at EOF.
    pub async fn summary(&mut self) -> io::Result<Option<TargetSummary>> {
        while let Some(msg) = self.next().await? {
            if let ServeMsg::Summary(summary) = msg {
                return Ok(Some(summary));
            }
        }
        Ok(None)
    }
}

const READY_PREFIX: &str = "sockcap serve: listening on ";

/// The line `sockcap serve` prints on stdout once it accepts connections, e.g.
/// `sockcap serve: listening on 127.0.0.1:41234 (mqtt)`.
pub fn ready_line(addr: SocketAddr, protocol: Protocol) -> String {
    format!("{READY_PREFIX}{addr} ({protocol})")
}

/// The bound address in a [`ready_line`], or `None` if `line` is not one: for
/// whoever runs `sockcap serve` and reads its stdout (sockcap's own processes
/// read [`ServeMsg`]s instead).
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim_end().strip_prefix(READY_PREFIX)?;
    let addr = rest.split(' ').next()?;
    addr.parse().ok()
}

/// The line `sockcap serve` prints on stderr at exit, e.g.
/// `sockcap serve: 3 accepted, 2 MQTT connects, 0 accept errors`, saying over
/// how many processes the figures are summed when it ran more than one.
pub(super) fn summary_line(target: &TargetSummary) -> String {
    let TargetSummary { summary: ServeSummary { accepted, connects, accept_errors }, processes, reported } = target;
    let line = format!("sockcap serve: {accepted} accepted, {connects} MQTT connects, {accept_errors} accept errors");
    match *processes {
        1 => line,
        n if *reported == n => format!("{line} (summed over {n} processes)"),
        n => format!("{line} (summed over the {reported} of {n} processes that reported)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_round_trips() {
        let v4: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(ready_line(v4, Protocol::Mqtt), "sockcap serve: listening on 127.0.0.1:41234 (mqtt)");
        assert_eq!(parse_ready_line(&ready_line(v4, Protocol::Mqtt)), Some(v4));
        let v6: SocketAddr = "[::1]:1883".parse().unwrap();
        let line = format!("{}\n", ready_line(v6, Protocol::Tcp));
        assert_eq!(parse_ready_line(&line), Some(v6));
    }

    #[test]
    fn parse_ready_line_rejects_other_lines() {
        for line in [
            "",
            "listening on 127.0.0.1:1",
            "sockcap serve: listening on ",
            "sockcap serve: listening on localhost:1883 (tcp)",
            "sockcap serve: listening on 127.0.0.1 (tcp)",
            "sockcap serve: 3 accepted, 0 MQTT connects, 0 accept errors",
        ] {
            assert_eq!(parse_ready_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn summary_line_says_over_how_many_processes() {
        let summary = ServeSummary { accepted: 300, connects: 299, accept_errors: 7 };
        let over = |processes, reported| summary_line(&TargetSummary { summary, processes, reported });
        let line = "sockcap serve: 300 accepted, 299 MQTT connects, 7 accept errors";
        assert_eq!(over(1, 1), line);
        assert_eq!(over(3, 3), format!("{line} (summed over 3 processes)"));
        assert_eq!(over(3, 2), format!("{line} (summed over the 2 of 3 processes that reported)"));
    }

    #[test]
    fn messages_are_one_json_line_each() {
        let ready = ServeMsg::Ready { addr: "127.0.0.1:41234".parse().unwrap(), tls_ca: None };
        assert_eq!(serde_json::to_string(&ready).unwrap(), r#"{"msg":"ready","addr":"127.0.0.1:41234"}"#);
        let summary = ServeMsg::Summary(TargetSummary {
            summary: ServeSummary { accepted: 3, connects: 2, accept_errors: 1 },
            processes: 2,
            reported: 2,
        });
        let line = serde_json::to_string(&summary).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<ServeMsg>(&line).unwrap(), summary);
    }

    #[tokio::test]
    async fn a_child_is_read_message_by_message_past_other_lines() {
        let stdout = concat!(
            "starting\n",
            r#"{"msg":"ready","addr":"127.0.0.1:5555"}"#,
            "\n",
            "sockcap serve: listening on 127.0.0.1:6666 (tcp)\n",
            r#"{"msg":"summary","summary":{"accepted":3,"connects":2,"accept_errors":1},"processes":1,"reported":1}"#,
            "\n",
        );
        let mut messages = ChildMessages::new(stdout.as_bytes());
        assert_eq!(messages.ready().await.unwrap(), Some(("127.0.0.1:5555".parse().unwrap(), None)));
        let figures = ServeSummary { accepted: 3, connects: 2, accept_errors: 1 };
        let summary = TargetSummary { summary: figures, processes: 1, reported: 1 };
        assert_eq!(messages.summary().await.unwrap(), Some(summary));
        assert_eq!(messages.next().await.unwrap(), None);
    }
}
