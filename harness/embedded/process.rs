//! The body of the `sockcap serve` command: signals, the worker processes, the
//! ready line, serving, and the summary of every process at exit.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::messages::{Audience, TargetSummary};
use super::options::ServeOptions;
use super::server::serve_over;
use super::tls::ServeTls;
use super::workers::{WorkerEnd, Workers};

/// Runs `sockcap serve` until SIGTERM or SIGINT: binds, starts the worker
/// processes (`opts.workers - 1`) and waits until they listen, prints the ready
/// line on stdout, serves, stops the workers, then prints on stderr one summary
/// line that adds up the figures of every process (both as JSON lines on stdout
/// instead for a parent sockcap process: [`Audience`]). Call it inside a tokio
/// runtime, from the future given to `block_on` (the workers die with the
/// thread that starts them).
pub async fn run_serve_process(opts: ServeOptions, tls: Option<ServeTls>) -> anyhow::Result<()> {
    let audience = Audience::of_this_process();
    // Over TLS: the certificate given, or one made now (removed at exit).
    let tls = match (opts.transport.uses_tls(), tls) {
        (false, _) => None,
        (true, Some(given)) => Some(given),
        (true, None) => Some(ServeTls::generate().context("making the TLS target's certificate")?),
    };
    let served = serve_process(opts, tls.as_ref(), audience).await;
    if let Some(tls) = &tls {
        tls.remove_made();
    }
    served
}

async fn serve_process(opts: ServeOptions, tls: Option<&ServeTls>, audience: Audience) -> anyhow::Result<()> {
    let server_config = tls.map(ServeTls::server_config).transpose()?;
    let shutdown = CancellationToken::new();
    // Install the handlers before the ready line announces us: a SIGTERM sent
    // right after it must drain, not kill the process.
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            () = on_signal.cancelled() => {}
        }
        on_signal.cancel();
    });
    // Also ends the signal task when `serve` fails.
    let _stop_signal_task = shutdown.clone().drop_guard();

    // This process accepts from the moment it listens; the workers start meanwhile.
    let (bound_tx, bound_rx) = oneshot::channel();
    let serving = serve_over(opts, server_config, shutdown.clone(), |addr| {
        let _ = bound_tx.send(addr);
    });
    let workers = async {
        let ends = run_workers(opts, tls, audience, bound_rx, &shutdown).await;
        if ends.is_err() {
            shutdown.cancel();
        }
        ends
    };
    let (summary, ends) = tokio::join!(serving, workers);
    let mut summary = summary?;
    let ends = ends?;

    let mut reported = 1;
    for end in &ends {
        if let Some(worker) = end.summary {
            summary.add(worker);
            reported += 1;
        }
    }
    let target = TargetSummary { summary, processes: opts.workers, reported };
    audience.say_summary(target).context("saying what the target did")?;
    Ok(())
}

/// Once `serve` has bound (`bound`), starts the workers, says to `audience`
/// that the target is ready when all of them listen, and waits for shutdown, by
/// when it has stopped them. Errs, with every worker stopped, if one fails to
/// start or the ready line (or message) cannot be printed.
async fn run_workers(
    opts: ServeOptions,
    tls: Option<&ServeTls>,
    audience: Audience,
    bound: oneshot::Receiver<SocketAddr>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<WorkerEnd>> {
    let Ok(addr) = bound.await else {
        // `serve` failed before it listened and says why.
        return Ok(Vec::new());
    };
    let count = opts.workers.saturating_sub(1);
    let Some(workers) = Workers::start(addr, opts, tls, count, shutdown).await.with_context(|| {
        format!("starting the {count} worker processes of `sockcap serve --workers {}`", opts.workers)
    })?
    else {
        // Interrupted before every worker listened: nothing was announced.
        return Ok(Vec::new());
    };
    let printed = audience.say_ready(addr, opts.protocol, tls.and_then(|t| t.ca.as_deref()));
    if printed.is_err() {
        // Nobody can find a target that could not announce itself.
        shutdown.cancel();
    }
    let ends = workers
        .serve(shutdown, |end| {
            if let Some(note) = end.note() {
                crate::stderr::line(format_args!("sockcap serve: {note}"));
            }
        })
        .await;
    printed.context("printing the ready line on stdout")?;
    Ok(ends)
}
