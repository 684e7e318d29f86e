//! The **memory** check: kernel and user memory per connection against MemAvailable (or
//! the memory cgroup's limit less its use, when lower: a container's, a pod's).

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::{bytes, count, plural};

/// Kernel memory per loopback TCP socket: ~5.4 KB, measured on this project's machines
/// (slab usage over 10,000s of idle sockets; a minimal C client/server pair measured
/// ~9.7 KB per connection pair, i.e. both sockets).
pub const KERNEL_BYTES_PER_SOCKET: u64 = 5_400;
/// sockcap's user memory per held connection: the budget the engine is built to
/// (1.5 KiB; `bench/memory.sh` measured 835–848 bytes of growth per idle held MQTT
/// connection in a worker, ~1.3 KB with each process's baseline, on this project's machine).
pub const HARNESS_BYTES_PER_CONNECTION: u64 = 1_536;
/// The embedded target's (`sockcap serve`, release build) user memory per held MQTT
/// connection: VmRSS grew by 1,117–1,152 bytes per connection over 10,000 idle
/// connections (each sent CONNECT and got CONNACK), measured on this project's machine.
pub const EMBEDDED_BYTES_PER_CONNECTION: u64 = 1_150;
/// What TLS adds to a held connection's user memory, in the client and in the embedded
/// target: rustls's state (a 1.1 KiB connection, its 4 KiB read buffer, which it keeps
/// once anything was read, and the session keys). `bench/tls.sh` measured, over 10,000
/// idle TLS 1.3 MQTT connections (release build, this project's machine, under load):
/// 9,315 bytes per client connection (TCP: 927) and 9,984 per target connection (TCP:
/// 1,151).
pub const TLS_EXTRA_BYTES: (u64, u64) = (8_400, 8_850);
/// What WebSocket adds (tungstenite's state, and the buffer its handshake read into,
/// which the connection keeps), on top of TLS's for `wss`. `bench/tls.sh` measured, over
/// 10,000 idle MQTT connections over ws: 5,519 bytes per client connection and 3,871
/// per target connection (TCP: 927 and 1,151).
pub const WS_EXTRA_BYTES: (u64, u64) = (4_600, 2_750);
/// User memory of one sockcap process before its first connection: an estimate
/// (`sockcap serve` idles at ~4.7 MB VmRSS; a run keeps three ~136 KiB histograms per
/// phase and its runtime on top).
pub const PROCESS_BASE_BYTES: u64 = 16 << 20;
/// Memory use past this share of MemAvailable (percent) warns.
pub const MEMORY_WARN_PERCENT: u64 = 80;

impl Ctx<'_> {
    pub(super) fn memory(&self) -> Check {
        let mut check = Check::new(CheckName::Memory, Side::Client);
        let sockets = self.sockets_per_connection();
        let transport = self.plan.transport.transport;
        let (mut client, mut target) = (HARNESS_BYTES_PER_CONNECTION, EMBEDDED_BYTES_PER_CONNECTION);
        if transport.uses_tls() {
            client += TLS_EXTRA_BYTES.0;
            target += TLS_EXTRA_BYTES.1;
        }
        if transport.uses_ws() {
            client += WS_EXTRA_BYTES.0;
            target += WS_EXTRA_BYTES.1;
        }
        let embedded = if self.embedded { target } else { 0 };
        let per_connection = KERNEL_BYTES_PER_SOCKET * sockets + client + embedded;
        let base = PROCESS_BASE_BYTES * (self.workers + self.target_workers);
        let estimate = self.peak * per_connection + base;
        check
            .figures
            .add("estimate_bytes", Some(estimate))
            .add("per_connection_bytes", Some(per_connection))
            .add("kernel_bytes_per_socket", Some(KERNEL_BYTES_PER_SOCKET))
            .add("sockets_per_connection", Some(sockets))
            .add("harness_bytes_per_connection", Some(client))
            .add("embedded_bytes_per_connection", self.embedded.then_some(target))
            .add("process_base_bytes", Some(base))
            .add("mem_available_bytes", self.env.mem_available);
        let target_note = if self.env.target_local && !self.embedded {
            " (the local target's own user memory is not counted)"
        } else {
            ""
        };
        let summary = format!(
            "{} connections × {} per connection ({} kernel × {sockets} socket{}, {} sockcap{}) + {} for {} process{} ≈ {}{target_note}",
            count(self.peak),
            bytes(per_connection),
            bytes(KERNEL_BYTES_PER_SOCKET),
            plural(sockets, "s"),
            bytes(client),
            if self.embedded { format!(", {} embedded target", bytes(target)) } else { String::new() },
            bytes(base),
            self.workers + self.target_workers,
            plural(self.workers + self.target_workers, "es"),
            bytes(estimate),
        );
        let Some(available) = self.env.mem_available else {
            return check.judged(Verdict::Skipped, format!("{summary}; the available memory could not be read"), None);
        };
        let gives_at = available.saturating_sub(base) / per_connection;
        check.gives_at = Some(gives_at);
        let summary = format!("{summary}, of {} available", bytes(available));
        let fix = format!(
            "lower the connect counts (at most {} fit), free memory, or run the target on another machine \
             (its sockets then cost memory there)",
            count(gives_at)
        );
        if estimate > available {
            return check.judged(Verdict::Blocks, summary, Some(fix));
        }
        if estimate > available / 100 * MEMORY_WARN_PERCENT {
            let summary = format!("{summary}: more than {MEMORY_WARN_PERCENT}% of it");
            return check.judged(Verdict::Warning, summary, Some(fix));
        }
        check.judged(Verdict::Fits, summary, None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{connect, env, plan, LOCAL};
    use super::*;

    #[test]
    fn memory_blocks_past_what_is_available_and_warns_near_it() {
        let plan = plan(LOCAL, &connect(10_000, 1_000));
        // 10,000 × (2 × 5.4 KB + 1.5 KiB) + 16 MiB ≈ 140 MB
        let e = Environment { mem_available: Some(100_000_000), ..env(&plan) };
        let memory = Ctx::new(&plan, &e).memory();
        assert_eq!(memory.verdict, Verdict::Blocks);
        assert_eq!(memory.figures.get("estimate_bytes"), Some(10_000 * 12_336 + (16 << 20)));
        let near = Environment { mem_available: Some(160_000_000), ..env(&plan) };
        assert_eq!(Ctx::new(&plan, &near).memory().verdict, Verdict::Warning);
    }

    #[test]
    fn tls_connections_cost_more_user_memory() {
        let mut plan = plan(LOCAL, &connect(10_000, 1_000));
        let tcp = Ctx::new(&plan, &env(&plan)).memory().figures.get("harness_bytes_per_connection");
        plan.transport.transport = crate::transport::Transport::Tls;
        let tls = Ctx::new(&plan, &env(&plan)).memory().figures.get("harness_bytes_per_connection");
        assert_eq!(
            (tcp, tls),
            (Some(HARNESS_BYTES_PER_CONNECTION), Some(HARNESS_BYTES_PER_CONNECTION + TLS_EXTRA_BYTES.0))
        );
    }
}
