//! Diagnostics on standard error that never fail the program: `eprintln!` panics when
//! stderr is a pipe whose reader went away (`sockcap run S 2>&1 | head`), and a note
//! or a warning is never worth a panic or a lost report. Every diagnostic line of the
//! harness goes through [`line`].

use std::fmt::Display;
use std::io::Write;

/// Write `text` and a newline to standard error in one write (stderr is unbuffered, and
/// lines of several processes share it); an error (a closed or full stderr) is ignored.
pub fn line(text: impl Display) {
    let text = format!("{text}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
