//! The text a command prints for a person (the report, a probe's census, a comparison)
//! on standard output, or on standard error when a report file takes standard output
//! (`--json -`). A reader that went away (`sockcap run S | head -1`: EPIPE, since Rust
//! ignores SIGPIPE) ends the text quietly: no panic, and the command goes on to write
//! its report files and exit with its verdict. Any other write error is the
//! environment's (exit 3), named.

use std::io::{self, Write};

use super::failure::Failure;

/// Where the text goes, and whether its reader has gone.
#[derive(Debug)]
pub struct Console {
    stream: Stream,
    /// The reader went away (EPIPE): nothing more is written.
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Console {
    pub fn stdout() -> Console {
        Console { stream: Stream::Stdout, closed: false }
    }

    pub fn stderr() -> Console {
        Console { stream: Stream::Stderr, closed: false }
    }

    /// Write `text`, flushed; a closed reader is not an error (see [`Console::closed`]).
    pub fn print(&mut self, text: &str) -> Result<(), Failure> {
        self.write(text.as_bytes())
    }

    /// Write `bytes`, flushed; a closed reader is not an error (see [`Console::closed`]).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let written = match self.stream {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => io::stderr().lock().write_all(bytes),
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => {
                let name = match self.stream {
                    Stream::Stdout => "standard output",
                    Stream::Stderr => "standard error",
                };
                Err(Failure::environment(anyhow::Error::new(e).context(format!("writing to {name}"))))
            }
        }
    }

    /// The reader went away: a command that only prints (`probe --watch`) can stop.
    pub fn closed(&self) -> bool {
        self.closed
    }
}
