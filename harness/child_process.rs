//! Child processes of sockcap's own (client workers, the embedded target and its
//! workers) that cannot outlive the process that starts them.

use std::process::Stdio;

use tokio::process::Command;

/// Sets up `command` as a sockcap child process (a client worker, the embedded
/// target or one of its workers) that cannot outlive this process: stdin from /dev/null, stdout piped (its messages), killed when its handle is
/// dropped, PR_SET_PDEATHSIG SIGKILL, and a process group of its own, so a
/// terminal's Ctrl-C reaches this process only, which stops the child in order.
/// The caller chooses stderr.
///
/// PR_SET_PDEATHSIG follows the *thread* that forks: spawn from one that lives as
/// long as the process, such as the main thread running the future given to
/// `block_on` (not from a task a runtime may run on a short-lived thread).
pub fn prepare(command: &mut Command) {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true);
    // A run's Ctrl-C drains and reports while its target keeps serving, then stops it;
    // a `serve` parent's Ctrl-C stops its workers with SIGTERM.
    command.process_group(0);
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: prctl and getppid are async-signal-safe; the closure touches no memory
    // of the parent but a copied integer.
    unsafe {
        command.pre_exec(move || {
            // Die with the parent, however it ends (a second Ctrl-C exits at once, SIGKILL).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl: no signal will come.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent exited while this child started"));
            }
            Ok(())
        });
    }
}
