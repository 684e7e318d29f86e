//! The live progress line on stderr: redrawn in place on a terminal, a plain line
//! every few seconds otherwise (CI logs). Rendered from the engine's `watch` channel.

use std::io::Write;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::Progress;

/// Interval of plain lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Render until the engine drops its sender.
pub async fn render(mut rx: watch::Receiver<Progress>, terminal: bool) {
    let mut last_plain = tokio::time::Instant::now();
    while rx.changed().await.is_ok() {
        let line = describe(&rx.borrow_and_update());
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r\x1b[K{line}");
        } else if last_plain.elapsed() >= PLAIN_EVERY {
            let _ = writeln!(err, "{line}");
            last_plain = tokio::time::Instant::now();
        }
        let _ = err.flush();
    }
    if terminal {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
}

fn describe(p: &Progress) -> String {
    let work = match p.kind {
        "connect" => format!("{}/{} connected", p.succeeded, p.planned),
        "close" => format!("{}/{} closed", p.succeeded, p.planned),
        _ => format!("{:.0}s", p.phase_elapsed.as_secs_f64()),
    };
    let census = match (p.established, p.time_wait) {
        (Some(e), Some(t)) => format!(", census: established {e}, time_wait {t}"),
        _ => String::new(),
    };
    format!(
        "[{}/{}] {} ({}): {work}, errors {}, open {}{census}",
        p.phase_index + 1,
        p.phase_count,
        p.phase_name,
        p.kind,
        p.failed,
        p.open
    )
}
