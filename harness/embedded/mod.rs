//! The embedded target (`sockcap serve`): a TCP / MQTT 3.1.1 server, built to
//! hold many idle connections cheaply, that a run can start when no real
//! target is given.
//!
//! - [`ServeOptions`], [`ServeSummary`] (in `options`): what the target is asked
//!   to do, and what it did.
//! - [`serve`] (in `server`): bind with SO_REUSEADDR + SO_REUSEPORT, accept until
//!   shutdown, one task per connection (`connection/`: the session loop and its
//!   misbehaviours in `session.rs`, the server side of each protocol in a file of
//!   its own).
//! - [`run_serve_process`] (in `process`): the body of the `sockcap serve`
//!   command: signals, the worker processes, the ready line on stdout, a summary
//!   on stderr.
//! - [`EmbeddedTarget`] (in `child`): runs `sockcap serve` as a child process
//!   and waits for its ready line, so the target's descriptors and CPU are not
//!   the client's.
//! - `workers`: past one process's descriptor limit, `sockcap serve --workers N`
//!   binds first (port 0 resolved), then starts N − 1 more `sockcap serve`
//!   processes on that address; SO_REUSEPORT lets all N listen on the port and
//!   the kernel hashes each new connection to one of them. The parent is ready
//!   when every worker has said so into a pipe (the workers' stdout never
//!   reaches the parent's). Workers die with the parent
//!   (PR_SET_PDEATHSIG), get SIGTERM when it stops (SIGKILL after 3 s), and a
//!   worker that dies while serving is noted on stderr while the rest serve on.
//!   [`workers_for`] says how many processes hold a number of connections.
//!
//! A person reads the ready line ([`ready_line`]; [`parse_ready_line`] for
//! scripts and tests) and the summary line on stderr at exit, one for the whole
//! target. Between sockcap's own processes the same two messages travel as JSON
//! lines on the child's stdout (`messages`: [`ServeMsg`]): a worker says it is
//! ready and, at exit, what it did, which its parent adds to its own figures; a
//! run's [`EmbeddedTarget`] reads its target's the same way and prints the
//! summary line on the run's stderr. The workers' stderr is relayed as it is.
//!
//! Besides serving politely, the target can misbehave on purpose so that a
//! scenario can put sockets in every TCP state ([`ServeOptions`]): never accept
//! (a full accept queue: clients stay in SYN_SENT), defer the accept
//! (TCP_DEFER_ACCEPT: SYN_RECV here while the client is ESTABLISHED), never read
//! (the client's data fills the window and its FIN queues behind it:
//! FIN_WAIT_1, CLOSING, LAST_ACK), and send its FIN first after a delay
//! (TIME_WAIT here, CLOSE_WAIT on the client).

mod child;
mod connection;
mod messages;
mod options;
mod process;
mod quiet_port;
#[cfg(test)]
mod recipes;
mod server;
#[cfg(test)]
mod testing;
mod tls;
mod workers;

/// The most processes one embedded target may run (`--workers`, `embedded.workers`).
pub use crate::descriptors::MAX_WORKERS;
/// The default listen backlog (`--backlog`, `embedded.backlog`).
pub use crate::socket::DEFAULT_BACKLOG;
pub use child::EmbeddedTarget;
#[doc(hidden)]
pub use connection::replies_to_reads;
pub use messages::{parse_ready_line, ready_line, ServeMsg, TargetSummary, PARENT_ENV};
pub use options::{ServeOptions, ServeSummary};
pub use process::run_serve_process;
pub use quiet_port::quiet_port;
pub use server::{serve, serve_over};
pub use tls::ServeTls;
pub use workers::workers_for;
