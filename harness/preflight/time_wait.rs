//! The **time_wait** check: TIME_WAIT sockets the closes leave at once against
//! net.ipv4.tcp_max_tw_buckets.

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::count;
use crate::plan::{Action, CloseMode, Plan};

/// How long a socket stays in TIME_WAIT (TCP_TIMEWAIT_LEN: fixed, not a sysctl).
const TIME_WAIT_SECS: f64 = 60.0;

impl Ctx<'_> {
    pub(super) fn time_wait(&self) -> Check {
        let mut check = Check::new(CheckName::TimeWait, Side::Client);
        let (client, server) = time_wait_at_once(self.plan);
        // The server side's TIME_WAIT is on this machine only when the target is.
        let here = client + if self.env.target_local { server } else { 0 };
        let now = self.env.time_wait_now.unwrap_or(0);
        check
            .figures
            .add("tcp_max_tw_buckets", self.env.limits.tcp_max_tw_buckets)
            .add("time_wait_now", self.env.time_wait_now)
            .add("time_wait_client", Some(client))
            .add("time_wait_server", Some(server));
        let where_ = if self.env.target_local { "" } else { " (the server side's are on the target's machine)" };
        let summary = format!(
            "the closes leave up to {} TIME_WAIT at once on the client side and {} on the server side{where_}; {} now",
            count(client),
            count(server),
            count(now)
        );
        let Some(buckets) = self.env.limits.tcp_max_tw_buckets else {
            return check.judged(Verdict::Skipped, format!("{summary}; tcp_max_tw_buckets could not be read"), None);
        };
        let summary = format!("{summary}, against net.ipv4.tcp_max_tw_buckets {}", count(buckets));
        if here + now <= buckets {
            return check.judged(Verdict::Fits, summary, None);
        }
        let summary = format!(
            "{summary}: the kernel destroys the excess at once (\"TCP: time wait bucket table overflow\" in dmesg), \
             so a `time_wait >= N` expectation past {} fails",
            count(buckets.saturating_sub(now))
        );
        let fix = format!(
            "`sysctl -w net.ipv4.tcp_max_tw_buckets={}`, close with `rst`, or let TIME_WAIT drain (`sleep = \"60s\"`) between close phases",
            ((here + now) * 11 / 10).div_ceil(1000) * 1000
        );
        check.judged(Verdict::Warning, summary, Some(fix))
    }
}

/// TIME_WAIT sockets the scenario leaves at once: (client side, server side). Client-first
/// closes (`fin`, `half-close`) leave them on the client, `mqtt-disconnect` on the server
/// (the broker closes first), `rst` nowhere. A churn leaves up to a minute's cycles; a
/// hold or sleep of a minute or more lets them drain. An upper bound: the time closes
/// themselves take is not counted.
pub fn time_wait_at_once(plan: &Plan) -> (u64, u64) {
    let (mut held, mut client, mut server) = (0u64, 0u64, 0u64);
    let (mut max_client, mut max_server) = (0u64, 0u64);
    let drained = |d: std::time::Duration| d.as_secs_f64() >= TIME_WAIT_SECS;
    for phase in &plan.phases {
        let (how, n) = match &phase.action {
            Action::Connect(c) => {
                held += c.count;
                continue;
            }
            Action::Close(c) => {
                let n = c.amount.of(held);
                held -= n;
                (c.how, n)
            }
            Action::Churn(c) => (c.how, c.count.min((c.rate * TIME_WAIT_SECS).ceil() as u64)),
            Action::Hold(d) | Action::Sleep(d) => {
                if drained(*d) {
                    (client, server) = (0, 0);
                }
                continue;
            }
            Action::Subscribe(_) | Action::Publish(_) => continue,
        };
        match how {
            CloseMode::Fin | CloseMode::HalfClose => client += n,
            CloseMode::MqttDisconnect => server += n,
            CloseMode::Rst => {}
        }
        max_client = max_client.max(client);
        max_server = max_server.max(server);
    }
    (max_client, max_server)
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{close, connect, env, plan, LOCAL, REMOTE};
    use super::*;

    #[test]
    fn time_wait_past_the_buckets_warns() {
        let plan = plan(LOCAL, &(connect(20_000, 10_000) + &close("fin")));
        let few = probe::Limits { tcp_max_tw_buckets: Some(10_000), ..env(&plan).limits };
        let e = Environment { limits: few.clone(), ..env(&plan) };
        let tw = Ctx::new(&plan, &e).time_wait();
        assert_eq!(tw.verdict, Verdict::Warning);
        assert!(tw.summary.contains("time wait bucket table overflow"), "{tw:?}");
        assert!(tw.fix.as_deref().unwrap().contains("tcp_max_tw_buckets=22000"), "{tw:?}");
        // rst leaves none
        let rst = self::plan(LOCAL, &(connect(20_000, 10_000) + &close("rst")));
        let e = Environment { limits: few.clone(), ..env(&rst) };
        assert_eq!(Ctx::new(&rst, &e).time_wait().verdict, Verdict::Fits);
        // the server side's TIME_WAIT of a remote target are not on this machine
        let mqtt = Plan::from_toml(
            std::path::Path::new("t.toml"),
            &format!(
                "name = \"t\"\nprotocol = \"mqtt\"\ntarget = \"{REMOTE}\"\n{}{}",
                connect(20_000, 10_000),
                close("mqtt-disconnect")
            ),
        )
        .unwrap();
        assert_eq!(time_wait_at_once(&mqtt), (0, 20_000));
        let remote =
            Environment { target: Some(REMOTE.parse().unwrap()), target_local: false, limits: few, ..env(&mqtt) };
        assert_eq!(Ctx::new(&mqtt, &remote).time_wait().verdict, Verdict::Fits);
    }

    #[test]
    fn time_wait_drains_over_a_minute() {
        let churn = "[[phase]]\nchurn = { rate = 1000, duration = \"5m\" }\n";
        let sleep = |d: &str| format!("[[phase]]\nsleep = \"{d}\"\n");
        let plan = self::plan(LOCAL, &(connect(5_000, 1_000) + &close("fin") + &sleep("10s") + churn));
        // 5,000 closed, then a minute of churn (60,000) before the first of it drains
        assert_eq!(time_wait_at_once(&plan), (65_000, 0));
        let plan = self::plan(LOCAL, &(connect(5_000, 1_000) + &close("fin") + &sleep("60s") + churn));
        assert_eq!(time_wait_at_once(&plan), (60_000, 0));
    }
}
