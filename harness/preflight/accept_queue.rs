//! The **accept_queue** check: the target's listen backlog against the fastest connect
//! rate.

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::count;
use crate::plan::{Action, Plan};

/// The accept queue should hold this many milliseconds of arrivals at the fastest rate.
pub const ACCEPT_QUEUE_MS: u64 = 10;

impl Ctx<'_> {
    pub(super) fn accept_queue(&self) -> Check {
        let mut check = Check::new(CheckName::AcceptQueue, Side::Target);
        let rate = fastest_connect_rate(self.plan);
        let arrivals = (rate * ACCEPT_QUEUE_MS as f64 / 1000.0).ceil() as u64;
        let somaxconn = self.env.limits.somaxconn;
        check
            .figures
            .add("somaxconn", somaxconn)
            .add("fastest_connect_rate_per_s", Some(rate.round() as u64))
            .add("arrivals_per_10ms", Some(arrivals));
        let (backlog, whose) = if self.embedded {
            if !self.plan.embedded.accept {
                let why = "the embedded target never accepts (`accept = false`): its queue fills on purpose";
                return check.judged(Verdict::Skipped, why.into(), None);
            }
            let backlog = u64::from(self.plan.embedded.backlog);
            (somaxconn.map_or(backlog, |s| backlog.min(s)), "the embedded target's backlog")
        } else if !self.env.target_local {
            let why = "the target is on another machine: its backlog (capped by its net.core.somaxconn) cannot be read from here";
            return check.judged(Verdict::Skipped, why.into(), None);
        } else {
            let queues: Vec<u64> =
                self.env.listeners.iter().flat_map(|l| &l.sockets).filter_map(|s| s.backlog.map(u64::from)).collect();
            if queues.is_empty() {
                let why = "no listening socket with a known backlog was found on the target's port";
                return check.judged(Verdict::Skipped, why.into(), None);
            }
            // SO_REUSEPORT listeners each have their own queue; arrivals are spread over them.
            (queues.iter().sum(), "the target's listen backlog")
        };
        check.figures.add("backlog", Some(backlog));
        let summary = format!(
            "{whose} is {} (net.core.somaxconn {}); the fastest connect rate, {}/s, brings {} connections every {ACCEPT_QUEUE_MS} ms",
            count(backlog),
            somaxconn.map_or("unknown".to_string(), count),
            count(rate.round() as u64),
            count(arrivals)
        );
        if backlog >= arrivals {
            return check.judged(Verdict::Fits, summary, None);
        }
        let summary = format!(
            "{summary}: a stall of {ACCEPT_QUEUE_MS} ms overflows the queue, SYNs are dropped and retried after 1 s, 3 s \
             (`kernel.ListenOverflows` > 0, connect latency past 1 s): a queue of {} holds {:.1} ms of arrivals at that rate",
            count(backlog),
            backlog as f64 * 1000.0 / rate.max(1.0)
        );
        let fix = if self.embedded {
            format!(
                "set `[embedded] backlog` to at least {} (and `sysctl -w net.core.somaxconn={}`, which caps it), or lower the rate to {}/s",
                count(arrivals),
                arrivals,
                count(backlog * 1000 / ACCEPT_QUEUE_MS)
            )
        } else {
            format!(
                "raise the target's listen backlog to at least {} (and net.core.somaxconn, which caps it), or lower the connect rate to {}/s",
                count(arrivals),
                count(backlog * 1000 / ACCEPT_QUEUE_MS)
            )
        };
        check.judged(Verdict::Warning, summary, Some(fix))
    }
}

/// The fastest connect rate of any phase (connects and churn cycles), per second.
pub fn fastest_connect_rate(plan: &Plan) -> f64 {
    plan.phases
        .iter()
        .map(|p| match &p.action {
            Action::Connect(c) => c.rate,
            Action::Churn(c) => c.rate,
            _ => 0.0,
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{connect, env, plan, LOCAL};
    use super::*;

    #[test]
    fn a_short_accept_queue_warns() {
        let plan = plan(LOCAL, &connect(20_000, 20_000));
        let env = env(&plan);
        let queue = Ctx::new(&plan, &env).accept_queue();
        assert_eq!(queue.verdict, Verdict::Warning);
        assert_eq!(queue.figures.get("arrivals_per_10ms"), Some(200));
        assert_eq!(queue.figures.get("backlog"), Some(100));
        assert!(queue.summary.contains("a queue of 100 holds 5.0 ms of arrivals at that rate"), "{queue:?}");
        assert!(!queue.summary.contains("mosquitto") && !queue.summary.contains("here"), "{queue:?}");
        // the embedded target's backlog is the scenario's, capped by somaxconn
        let embedded = self::plan("target = \"embedded\"\n[embedded]\nbacklog = 100", &connect(20_000, 20_000));
        let e = Environment { target: None, listeners: None, ..self::env(&embedded) };
        assert_eq!(Ctx::new(&embedded, &e).accept_queue().verdict, Verdict::Warning);
        let capped = self::plan("target = \"embedded\"", &connect(20_000, 20_000));
        let e = Environment { target: None, listeners: None, ..self::env(&capped) };
        let queue = Ctx::new(&capped, &e).accept_queue();
        assert_eq!((queue.verdict, queue.figures.get("backlog")), (Verdict::Fits, Some(4096)));
    }
}
