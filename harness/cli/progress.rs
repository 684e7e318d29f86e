//! Live progress on stderr, rendered from the engine's `watch` channel.
//!
//! On a terminal: an `indicatif` bar per phase (`[1/3] ramp (connect) [=====>   ] 2500/5000`
//! then rate, errors, open connections and the last census), redrawn in place; hold and
//! sleep phases, which have no count to fill, show a spinner and their elapsed time.
//! Not on a terminal (CI logs): a plain line when a phase starts and every 5 s.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::engine::Progress;
use crate::printable::printable;

/// Interval of plain lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The window the live rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Render until the engine drops its sender.
pub async fn render(rx: watch::Receiver<Progress>, terminal: bool) {
    if terminal {
        render_bar(rx).await
    } else {
        render_plain(rx).await
    }
}

async fn render_bar(mut rx: watch::Receiver<Progress>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let mut phase = None;
    let mut rate = RateMeter::default();
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        let r = rate.update(&p);
        // Message first: the position update is what redraws (rate-limited by indicatif).
        bar.set_message(status(&p, r));
        if phase != Some(p.phase_index) {
            phase = Some(p.phase_index);
            start_phase(&bar, &p);
        }
        if counted(&p) {
            bar.set_length(p.planned);
            bar.set_position(p.succeeded + p.failed);
        } else {
            bar.tick();
        }
    }
    bar.finish_and_clear();
}

fn start_phase(bar: &ProgressBar, p: &Progress) {
    let template = if counted(p) {
        "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {wide_msg}"
    } else {
        "{prefix:.bold} {spinner:.cyan} {wide_msg}"
    };
    let style = ProgressStyle::with_template(template).expect("static progress templates are valid");
    bar.set_style(style.progress_chars("=> "));
    bar.set_length(p.planned);
    bar.set_position(0);
    bar.set_prefix(format!("[{}/{}] {} ({})", p.phase_index + 1, p.phase_count, printable(&p.phase_name), p.kind));
    bar.reset();
}

async fn render_plain(mut rx: watch::Receiver<Progress>) {
    let mut last_line: Option<tokio::time::Instant> = None;
    let mut phase = None;
    let mut rate = RateMeter::default();
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        let r = rate.update(&p);
        let new_phase = phase != Some(p.phase_index);
        if new_phase || last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            phase = Some(p.phase_index);
            last_line = Some(tokio::time::Instant::now());
            let _ = writeln!(std::io::stderr().lock(), "{}", describe(&p, r));
        }
    }
}

/// Phases whose work is a count (connect, close, churn) get a bar; the others a spinner.
fn counted(p: &Progress) -> bool {
    p.planned > 0
}

/// The plain line: `[1/3] ramp (connect): 2500/5000 connected, 2480/s, errors 0, open 2500, census: ...`.
pub fn describe(p: &Progress, rate: Option<f64>) -> String {
    let work = match p.kind {
        "connect" => format!("{}/{} connected, ", p.succeeded, p.planned),
        "close" => format!("{}/{} closed, ", p.succeeded, p.planned),
        "churn" => format!("{}/{} cycles, ", p.succeeded, p.planned),
        _ => String::new(),
    };
    format!(
        "[{}/{}] {} ({}): {work}{}",
        p.phase_index + 1,
        p.phase_count,
        printable(&p.phase_name),
        p.kind,
        status(p, rate)
    )
}

/// What follows the bar: rate (counted phases) or elapsed time, errors, open, census.
fn status(p: &Progress, rate: Option<f64>) -> String {
    let head = match (counted(p), rate) {
        (true, Some(r)) => format!("{r:.0}/s"),
        (true, None) => "-/s".to_string(),
        (false, _) => format!("{:.0}s", p.phase_elapsed.as_secs_f64()),
    };
    let census = match (p.established, p.time_wait) {
        (Some(e), Some(t)) => format!(", census: established {e}, time_wait {t}"),
        _ => String::new(),
    };
    let workers = if p.workers > 1 { format!(" in {} workers", p.workers) } else { String::new() };
    format!("{head}, errors {}, open {}{workers}{census}", p.failed, p.open)
}

/// Successes per second over the last [`RATE_WINDOW`] of the current phase.
#[derive(Debug, Default)]
struct RateMeter {
    phase: Option<usize>,
    /// `(phase elapsed, succeeded)`, oldest first.
    points: VecDeque<(Duration, u64)>,
}

impl RateMeter {
    /// Add an update; the rate once the window spans at least 200 ms.
    fn update(&mut self, p: &Progress) -> Option<f64> {
        if self.phase != Some(p.phase_index) {
            self.phase = Some(p.phase_index);
            self.points.clear();
        }
        self.points.push_back((p.phase_elapsed, p.succeeded));
        while self.points.len() > 2 && p.phase_elapsed.saturating_sub(self.points[1].0) >= RATE_WINDOW {
            self.points.pop_front();
        }
        let (t0, n0) = *self.points.front()?;
        let (t1, n1) = *self.points.back()?;
        let span = t1.saturating_sub(t0);
        if span < Duration::from_millis(200) {
            // Too short a window: the phase's average so far, if it has one.
            let elapsed = p.phase_elapsed.as_secs_f64();
            return (elapsed >= 0.2).then(|| p.succeeded as f64 / elapsed);
        }
        Some(n1.saturating_sub(n0) as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(index: usize, kind: &'static str, ms: u64, succeeded: u64) -> Progress {
        Progress {
            phase_index: index,
            phase_count: 3,
            phase_name: "ramp".into(),
            kind,
            planned: if kind == "hold" { 0 } else { 5000 },
            succeeded,
            failed: 2,
            open: succeeded,
            phase_elapsed: Duration::from_millis(ms),
            established: Some(succeeded),
            time_wait: Some(0),
            ..Progress::default()
        }
    }

    #[test]
    fn the_rate_follows_the_last_window() {
        let mut m = RateMeter::default();
        assert_eq!(m.update(&progress(0, "connect", 100, 100)), None);
        // 1000/s for 3 s, then 4000/s: the 2 s window forgets the slow start.
        for t in 1..=12 {
            m.update(&progress(0, "connect", 100 + t * 250, 100 + t * 250));
        }
        for t in 1..=12 {
            m.update(&progress(0, "connect", 3100 + t * 250, 3100 + t * 1000));
        }
        let r = m.update(&progress(0, "connect", 6350, 15100 + 1000)).unwrap();
        assert!((r - 4000.0).abs() < 1.0, "{r}");
        // A new phase starts from nothing.
        assert_eq!(m.update(&progress(1, "close", 50, 10)), None);
    }

    #[test]
    fn lines_say_phase_work_rate_errors_and_census() {
        let line = describe(&progress(0, "connect", 1000, 2500), Some(2480.4));
        assert_eq!(line, "[1/3] ramp (connect): 2500/5000 connected, 2480/s, errors 2, open 2500, census: established 2500, time_wait 0");
        let hold = describe(&progress(1, "hold", 4200, 5000), None);
        assert_eq!(hold, "[2/3] ramp (hold): 4s, errors 2, open 5000, census: established 5000, time_wait 0");
    }

    #[test]
    fn the_bar_takes_every_phase_kind() {
        // Drawing to a hidden target exercises styles and templates without a terminal.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        for p in [progress(0, "connect", 10, 1), progress(1, "hold", 10, 1), progress(2, "close", 10, 1)] {
            start_phase(&bar, &p);
            bar.set_message(status(&p, Some(1.0)));
        }
        assert_eq!(bar.prefix(), "[3/3] ramp (close)");
    }
}
