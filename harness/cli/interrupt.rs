//! Ctrl-C and SIGTERM during `sockcap run`. The first stops the run cleanly: the engine
//! drains, reports the phase it was in, and the report is written (exit 130). A second
//! SIGINT or SIGTERM ends the process at once with exit code 130, from the signal handler
//! itself: a runtime that is busy or stuck, or the report still being written after the
//! engine returned, cannot hold it up. The children (client workers, the embedded target)
//! die with the process: each has PR_SET_PDEATHSIG SIGKILL (`child_process::prepare`).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::failure::exit;

/// SIGINT and SIGTERM received so far, counted in the signal handler.
static STOP_SIGNALS: AtomicU32 = AtomicU32::new(0);

/// Watch SIGINT and SIGTERM for the rest of the process's life (call it within a
/// runtime): the first cancels `shutdown`, a second quits at once. Until this is called
/// the default action applies (the process ends at the first).
pub fn watch(shutdown: CancellationToken) -> io::Result<JoinHandle<()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action is async-signal-safe: an atomic add, write(2) and _exit(2).
        unsafe { signal_hook_registry::register(sig, on_stop_signal) }?;
    }
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        crate::stderr::line(
            "\nsockcap: interrupted; closing connections and writing the report (Ctrl-C again to quit now)",
        );
        shutdown.cancel();
    }))
}

/// Runs in the signal handler, beside tokio's own action: from the second stop signal
/// on, quit now.
fn on_stop_signal() {
    if STOP_SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        return;
    }
    const MESSAGE: &[u8] = b"\nsockcap: interrupted again; quitting now, without a report\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MESSAGE is static.
    unsafe {
        libc::write(libc::STDERR_FILENO, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(i32::from(exit::INTERRUPTED));
    }
}
