#!/bin/sh
# Benchmark: hold N MQTT connections against the embedded target on this machine,
# verified by the census on both sides, then close them; repeat for each N given.
#
#   bench/capacity.sh                      # 100,000
#   bench/capacity.sh 100000 200000 500000 1000000
#   RATE=30000 bench/capacity.sh 200000    # connect rate asked for (default 30,000/s)
#
# Needs ss (iproute2), python3 (to read the JSON report) and a release build (made here).
# Prints per N: time to ramp and connect rate per 10,000 connections through the ramp,
# connect and CONNACK p50/p99/p99.9, the census on both sides, harness and target RSS
# per connection, and census times (sockcap probe vs `ss -tan state established | wc -l`
# vs a read of /proc/net/tcp{,6}) over the 2N sockets of the held connections.
set -eu
cd "$(dirname "$0")/.."
RATE=${RATE:-30000}
cargo build --release -q
BIN=$PWD/target/release/sockcap
WORK=$(mktemp -d)
cleanup() {
    [ -n "${RUN_PID:-}" ] && kill -INT "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Children of $1 running `sockcap $2`.
children() {
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        if tr '\0' ' ' < /proc/"$c"/cmdline 2>/dev/null | grep -q "^$BIN $2 \|sockcap $2 "; then echo "$c"; fi
    done
}
rss_kb() { # sum of VmRSS of the pids given
    t=0; for p in "$@"; do r=$(awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0); t=$((t + ${r:-0})); done; echo "$t"
}
pss_kb() { # sum of Pss (shared pages split among the processes mapping them)
    t=0; for p in "$@"; do r=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0); t=$((t + ${r:-0})); done; echo "$t"
}
ms_since() { python3 -c "import sys,time; print(f'{(time.time_ns()-int(sys.argv[1]))/1e6:.0f}')" "$1"; }

[ $# -eq 0 ] && set -- 100000
for N in "$@"; do
    HOLD=20
    cat > "$WORK/s.toml" <<TOML
name = "bench: $N MQTT connections"
target = "embedded"
protocol = "mqtt"
[mqtt]
keep_alive = "120s"
[[phase]]
name = "ramp"
connect = { count = $N, rate = $RATE, timeout = "30s" }
expect = { established = "== $N" }
[[phase]]
name = "hold"
hold = "${HOLD}s"
expect = { established = "== $N" }
[[phase]]
name = "close"
close = { how = "rst", rate = 200000 }
expect = { established = "== 0" }
TOML
    echo "== $N connections, asked rate $RATE/s"
    "$BIN" run "$WORK/s.toml" --json "$WORK/out.json" --quiet > "$WORK/report.txt" 2> "$WORK/stderr.txt" &
    RUN_PID=$!
    # Wait for the hold: the target's port from its listening socket, then N established.
    PORT=""
    while [ -z "$PORT" ]; do
        sleep 0.2
        for s in $(children "$RUN_PID" serve); do
            PORT=$(ss -Htlnp | grep "pid=$s," | awk '{print $4}' | sed 's/.*://' | head -1)
        done
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/stderr.txt"; exit 1; }
    done
    # /proc/net/sockstat is cheap to read, where `ss` at 100k+ sockets costs the run a
    # core for a second: wait for 2N TCP sockets in use (client and server sides).
    until [ "$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)" -ge $((2 * N)) ]; do
        sleep 0.5
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/report.txt" "$WORK/stderr.txt"; break; }
    done
    sleep 1
    HARNESS_KB=$(rss_kb "$RUN_PID" $(children "$RUN_PID" worker))
    HARNESS_PSS_KB=$(pss_kb "$RUN_PID" $(children "$RUN_PID" worker))
    NWORKERS=$(children "$RUN_PID" worker | wc -l)
    SERVE=$(children "$RUN_PID" serve)
    TARGET_KB=$(rss_kb $SERVE $(for s in $SERVE; do children "$s" serve; done))
    t0=$(python3 -c 'import time; print(time.time_ns())'); "$BIN" probe --port "$PORT" --json > "$WORK/probe.json"; probe_ms=$(ms_since "$t0")
    t0=$(python3 -c 'import time; print(time.time_ns())'); SS_EST=$(ss -tan state established | wc -l); ss_ms=$(ms_since "$t0")
    t0=$(python3 -c 'import time; print(time.time_ns())'); cat /proc/net/tcp /proc/net/tcp6 > /dev/null; proc_ms=$(ms_since "$t0")
    wait "$RUN_PID" || true
    [ -n "${KEEP:-}" ] && cp "$WORK/out.json" "$KEEP"
    RUN_PID=""
    python3 - "$WORK/out.json" "$WORK/probe.json" "$N" "$HARNESS_KB" "$TARGET_KB" "$NWORKERS" "$probe_ms" "$ss_ms" "$proc_ms" "$SS_EST" "$HARNESS_PSS_KB" <<'PY'
import json, sys
report, probe = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
n, harness_kb, target_kb, workers = (int(x) for x in sys.argv[3:7])
probe_ms, ss_ms, proc_ms, ss_est = sys.argv[7:11]
harness_pss_kb = int(sys.argv[11])
ramp = next(p for p in report["phases"] if p["name"] == "ramp")
hold = next(p for p in report["phases"] if p["name"] == "hold")
lat = ramp["latency_us"]
print(f"outcome {report['outcome']}, passed {report['passed']}; workers {report['scenario']['workers']}, "
      f"sources {len(report['scenario']['sources'])}")
print(f"ramp: {ramp['succeeded']}/{n} in {ramp['duration_ms']/1000:.2f} s, {ramp['achieved_rate_per_s']:.0f}/s; "
      f"errors {sum(ramp['errors'].values())}")
# Connect rate per 10,000 connections, from the merged per-100 ms success counts.
def crossing(k):
    done = 0
    for i, n in enumerate(ramp["timeline_100ms"]):
        if n and done + n >= k:
            return (i + (k - done) / n) * 100.0
        done += n
    return None
step = 10_000
marks = [crossing(k) for k in range(0, n + 1, step)]
rates = []
for i in range(1, len(marks)):
    if marks[i] is not None and marks[i-1] is not None and marks[i] > marks[i-1]:
        rates.append(f"{step/((marks[i]-marks[i-1])/1000):.0f}")
print("connect rate per 10,000 through the ramp (/s): " + " ".join(rates))
for name in ("connect", "handshake"):
    l = lat[name]
    print(f"{name:9} p50 {l['p50']/1000:.2f} ms, p99 {l['p99']/1000:.2f} ms, p99.9 {l['p999']/1000:.2f} ms, max {l['max']/1000:.1f} ms (count {l['count']})")
c, s = hold["census"]["client"], (hold["census"]["server"] or {})
print(f"census at the end of the ramp: client established {ramp['census']['client'].get('established', 0)}, "
      f"server established {(ramp['census']['server'] or {}).get('established', 0)}; hold end: {c.get('established',0)} / {s.get('established',0)}")
print(f"harness RSS {harness_kb/1024:.1f} MiB over {workers} workers + coordinator = {harness_kb*1024/n:.0f} B per connection "
      f"(PSS, the binary's shared pages counted once: {harness_pss_kb*1024/n:.0f} B)")
print(f"target RSS {target_kb/1024:.1f} MiB = {target_kb*1024/n:.0f} B per connection")
print(f"census of {2*n} sockets (both sides): sockcap probe {probe['elapsed_us']/1000:.0f} ms in-process "
      f"({probe_ms} ms with process start), ss -tan state established | wc -l {ss_ms} ms ({ss_est} lines), "
      f"cat /proc/net/tcp{{,6}} {proc_ms} ms")
for note in report["notes"]:
    print("note:", note)
PY
done
