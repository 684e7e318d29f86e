//! `sockcap serve`: the embedded target on its own.

use super::{exit, Failure, ServeArgs};
use crate::descriptors;
use crate::embedded::{self, ServeOptions};

pub fn serve(args: ServeArgs) -> Result<u8, Failure> {
    descriptors::raise_nofile().map_err(|e| Failure::environment(anyhow::Error::new(e).context("raising RLIMIT_NOFILE")))?;
    let opts = ServeOptions {
        listen: args.listen,
        protocol: args.protocol,
        backlog: args.backlog,
        on_eof: args.on_eof,
        accept: !args.no_accept,
        defer_accept: args.defer_accept,
        read: !args.no_read,
        shutdown_after: args.shutdown_after,
        workers: args.workers,
    };
    // One of several processes sharing the port: one thread each, as client workers.
    let rt = if args.workers > 1 || args.one_thread {
        super::tune_malloc_for_connections();
        super::runtime_on_this_thread()?
    } else {
        super::runtime()?
    };
    rt.block_on(embedded::run_serve_process(opts)).map_err(Failure::environment)?;
    Ok(exit::PASSED)
}
