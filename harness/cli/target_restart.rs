//! `fault = { restart_target }` on the CLI's side: the engine asks through a channel
//! ([`crate::engine::TargetRestarts`]); this serves it with the run's
//! [`EmbeddedTarget`], from the main thread (children started here die with the run,
//! see [`crate::child_process::prepare`]).

use tokio::sync::mpsc;

use crate::embedded::{EmbeddedTarget, ServeOptions};
use crate::engine::{RestartRequest, TargetRestarts};

/// Requests waiting at once (a phase asks for one at a time).
const QUEUE: usize = 4;

/// A channel for the engine's restart requests, and its receiving end for [`serve`].
pub(super) fn channel() -> (TargetRestarts, mpsc::Receiver<RestartRequest>) {
    mpsc::channel(QUEUE)
}

/// Serve restarts of `target` until every sender is gone; returns the target then
/// running (none when a restart could not start it again), for the run to stop.
/// `opts` are the options it was started with; restarts listen on its address.
pub(super) async fn serve(
    mut target: Option<EmbeddedTarget>,
    opts: ServeOptions,
    mut requests: mpsc::Receiver<RestartRequest>,
) -> Option<EmbeddedTarget> {
    while let Some(request) = requests.recv().await {
        let (answer, now) = restart(target.take(), &opts, request.pause).await;
        target = now;
        let _ = request.done.send(answer);
    }
    target
}

/// Kill `old` (all its processes at once), wait `pause`, start it again on its port.
async fn restart(
    old: Option<EmbeddedTarget>,
    opts: &ServeOptions,
    pause: std::time::Duration,
) -> (Result<String, String>, Option<EmbeddedTarget>) {
    let Some(old) = old else {
        return (Err("the embedded target is not running (an earlier restart failed)".into()), None);
    };
    let addr = old.addr;
    let killed = match old.kill_all().await {
        Ok(pids) => pids,
        Err(e) => return (Err(format!("killing the embedded target: {e:#}")), None),
    };
    tokio::time::sleep(pause).await;
    let opts = ServeOptions { listen: addr, ..*opts };
    match EmbeddedTarget::spawn(opts).await {
        Ok(new) => {
            let pids: Vec<String> = killed.iter().map(u32::to_string).collect();
            let what = format!("killed pid {} (SIGKILL); started pid {} on {addr}", pids.join(", "), new.pid);
            (Ok(what), Some(new))
        }
        Err(e) => (Err(format!("starting the embedded target again on {addr}: {e:#}")), None),
    }
}
