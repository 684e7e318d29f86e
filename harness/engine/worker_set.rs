//! The coordinator's workers: one in this process, or `sockcap worker` child
//! processes spoken to in JSON lines (orders on stdin, messages on stdout).
//!
//! Child workers have a process group of their own (a terminal's Ctrl-C reaches the
//! coordinator only, which orders them to stop and still collects their phase
//! reports) and PR_SET_PDEATHSIG, so none outlives the coordinator however it ends.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::messages::{Order, WorkerMsg};
use super::worker::{self, WorkerContext, WorkerLink};
use crate::plan::Plan;
use crate::shard::Shard;
use crate::sources::Sources;

/// What reaches the coordinator from worker `i`.
#[derive(Debug)]
pub enum Inbound {
    Msg(WorkerMsg),
    /// The worker is gone; `failure` says why when it did not end cleanly.
    Ended {
        failure: Option<String>,
    },
}

/// The workers of a run.
#[derive(Debug)]
pub struct WorkerSet {
    orders: Vec<mpsc::UnboundedSender<Order>>,
    inbox: mpsc::UnboundedReceiver<(usize, Inbound)>,
    names: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
    /// The worker processes' ids (none for a worker in this process).
    pids: Vec<u32>,
}

impl WorkerSet {
    /// One worker running the whole plan in this process.
    pub fn in_process(plan: Arc<Plan>, ctx: WorkerContext) -> WorkerSet {
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let (out, mut msgs) = mpsc::unbounded_channel();
        let worker = tokio::spawn(async move {
            worker::run(&plan, ctx, WorkerLink { orders, out }, CancellationToken::new()).await;
        });
        let forward = tokio::spawn(async move {
            while let Some(msg) = msgs.recv().await {
                let _ = inbox_tx.send((0, Inbound::Msg(msg)));
            }
            let failure = worker.await.err().map(|e| format!("the worker task failed: {e}"));
            let _ = inbox_tx.send((0, Inbound::Ended { failure }));
        });
        WorkerSet {
            orders: vec![orders_tx],
            inbox,
            names: vec!["the worker".into()],
            tasks: vec![forward],
            pids: Vec::new(),
        }
    }

    /// `count` worker processes (`sockcap worker`) for host shard `host`: worker `w`
    /// runs shard `host.index + host.count × w` of `host.count × count`, so that the
    /// host's workers together run exactly the host's share.
    pub fn processes(
        scenario: &Scenario,
        target: SocketAddr,
        sources: &Sources,
        host: Shard,
        count: u32,
    ) -> anyhow::Result<WorkerSet> {
        let exe = std::env::current_exe().context("locating the sockcap executable to start worker processes")?;
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let mut set = WorkerSet { orders: Vec::new(), inbox, names: Vec::new(), tasks: Vec::new(), pids: Vec::new() };
        for index in 0..count {
            let shard = Shard::compose(host, index, count);
            let mut command = Command::new(&exe);
            command.args(worker_args(scenario, target, sources, shard, host.count));
            let child = spawn_worker(command).with_context(|| format!("starting worker {index} ({exe:?})"))?;
            let name = format!("worker {index} (pid {})", child.id().unwrap_or(0));
            set.pids.extend(child.id());
            set.attach(child, name, inbox_tx.clone());
        }
        Ok(set)
    }

    fn attach(&mut self, mut child: Child, name: String, inbox: mpsc::UnboundedSender<(usize, Inbound)>) {
        let i = self.names.len();
        let (orders_tx, mut orders) = mpsc::unbounded_channel::<Order>();
        let mut stdin = child.stdin.take().expect("worker stdin is piped");
        let stdout = child.stdout.take().expect("worker stdout is piped");
        let writer = tokio::spawn(async move {
            while let Some(order) = orders.recv().await {
                let mut line = serde_json::to_vec(&order).expect("orders serialize");
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut done = false;
            let mut garbled = None;
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerMsg>(&line) {
                    Ok(msg) => {
                        done |= matches!(msg, WorkerMsg::Done { .. });
                        let _ = inbox.send((i, Inbound::Msg(msg)));
                    }
                    Err(e) => garbled = Some(format!("sent a line that is not a worker message ({e}): {line:.120}")),
                }
            }
            let status = child.wait().await;
            let failure = match (status, done, garbled) {
                (_, _, Some(why)) => Some(why),
                (Ok(status), true, None) if status.success() => None,
                (Ok(status), _, None) => Some(format!("exited with {status}")),
                (Err(e), _, None) => Some(format!("could not be waited for: {e}")),
            };
            let _ = inbox.send((i, Inbound::Ended { failure }));
        });
        self.orders.push(orders_tx);
        self.names.push(name);
        self.tasks.extend([writer, reader]);
    }

    /// The worker processes' ids (empty when the worker runs in this process).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// How a worker is named in messages, e.g. "worker 2 (pid 4242)".
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn broadcast(&self, order: Order) {
        for orders in &self.orders {
            let _ = orders.send(order.clone());
        }
    }

    /// The next message of any worker; `None` once every worker is gone.
    pub async fn recv(&mut self) -> Option<(usize, Inbound)> {
        self.inbox.recv().await
    }

    /// A message already waiting, if any.
    pub fn try_recv(&mut self) -> Option<(usize, Inbound)> {
        self.inbox.try_recv().ok()
    }

    /// Stop talking: a worker process reading stdin sees EOF and stops.
    pub fn hang_up(&mut self) {
        self.orders.clear();
    }
}

impl Drop for WorkerSet {
    fn drop(&mut self) {
        // Dropping a reader task drops its child, which kills it (kill_on_drop).
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The scenario file the workers read, its SHA-256 as the coordinator read it, and
/// whether the run's target is the embedded one the coordinator started.
#[derive(Debug, Clone)]
pub struct Scenario<'a> {
    pub path: &'a Path,
    pub sha256: &'a str,
    /// The workers read the scenario as written for the embedded target (its
    /// `[embedded]` and `[netns]` sections stand) and connect to the address they are given.
    pub embedded: bool,
    /// The CA file of the embedded TLS target, which the workers trust (`--tls-ca`).
    pub tls_ca: Option<&'a Path>,
}

/// The `sockcap worker` command line for one shard.
fn worker_args(scenario: &Scenario, target: SocketAddr, sources: &Sources, shard: Shard, hosts: u32) -> Vec<String> {
    let mut args = vec![
        "worker".to_string(),
        scenario.path.display().to_string(),
        "--scenario-sha256".into(),
        scenario.sha256.to_string(),
        "--target".into(),
        target.to_string(),
        "--shard".into(),
        shard.to_string(),
        "--ports".into(),
        format!("{}-{}", sources.ports.0, sources.ports.1),
        "--hosts".into(),
        hosts.to_string(),
    ];
    if !sources.addrs.is_empty() {
        args.extend(["--sources".into(), crate::sources::compact(&sources.addrs)]);
    }
    if scenario.embedded {
        args.push("--embedded".into());
    }
    if let Some(ca) = scenario.tls_ca {
        args.extend(["--tls-ca".into(), ca.display().to_string()]);
    }
    args
}

fn spawn_worker(mut command: Command) -> std::io::Result<Child> {
    // Its own process group and PR_SET_PDEATHSIG, as the embedded target has; then the
    // orders on stdin.
    crate::child_process::prepare(&mut command);
    command.stdin(Stdio::piped()).stderr(Stdio::inherit());
    command.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_command_lines_carry_the_shard_and_sources() {
        let sources = Sources::new(vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()], (1000, 2000));
        let target = "127.0.0.1:1883".parse().unwrap();
        let scenario = Scenario { path: Path::new("s.toml"), sha256: "ab12", embedded: false, tls_ca: None };
        let args = worker_args(&scenario, target, &sources, Shard { index: 1, count: 3 }, 1);
        assert_eq!(
            args.join(" "),
            "worker s.toml --scenario-sha256 ab12 --target 127.0.0.1:1883 --shard 1/3 --ports 1000-2000 --hosts 1 \
             --sources 127.0.0.2-127.0.0.3"
        );
        // Workers of a run against the embedded target read the scenario as written for it.
        let embedded = Scenario { embedded: true, ..scenario };
        let args = worker_args(&embedded, target, &sources, Shard { index: 1, count: 3 }, 1);
        assert_eq!(args.last().map(String::as_str), Some("--embedded"));
    }
}
