#!/bin/sh
# Benchmark: harness memory per held connection. MQTT clients against the embedded
# target: an idle phase, a ramp to N connections, a hold; RSS is read from /proc while
# idle (the per-process baseline) and while holding.
#
#   bench/memory.sh                        (builds --release; N=15000, WORKERS="1 3")
#   N=18000 WORKERS="2" KEEP_ALIVE=30s bench/memory.sh
#
# "Harness RSS" is the VmRSS of `sockcap run` (the coordinator) plus its `sockcap
# worker` children, not of the embedded target `sockcap serve`. With --workers 1 the
# worker runs inside the coordinator. VmRSS counts the binary's and libc's pages
# (file-backed, shared by all the processes) once per process.
#
# Prints per run: processes, baseline per process, marginal bytes per connection, RSS
# per connection, the ramp's connect rate; then a projection for 100,000 connections
# over 6 worker processes and a coordinator, from the run with the most workers:
# 6 x the idle worker + 100,000 x the workers' marginal cost + the coordinator, idle
# plus its growth scaled to 100,000. It errs high: the workers' one-time costs (a
# phase's histograms) are spread over N / WORKERS connections each, not 16,667.
# The embedded target is one process: keep N under ~19,000.
set -eu
cd "$(dirname "$0")/.."
N=${N:-15000}
WORKERS=${WORKERS:-"1 3"}
RATE=${RATE:-10000}
KEEP_ALIVE=${KEEP_ALIVE:-10s}
HOLD=${HOLD:-20s}
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/sockcap
WORK=$(mktemp -d)
RUN_PID=""
cleanup() {
    if [ -n "$RUN_PID" ]; then kill "$RUN_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat > "$WORK/s.toml" <<TOML
name = "bench: memory at $N held MQTT connections"
target = "embedded"
protocol = "mqtt"
sample_every = "5s"
[mqtt]
keep_alive = "$KEEP_ALIVE"
[[phase]]
name = "idle"
sleep = "8s"
[[phase]]
name = "ramp"
connect = { count = $N, rate = $RATE, timeout = "20s" }
[[phase]]
name = "hold"
hold = "$HOLD"
[[phase]]
name = "close"
close = { how = "rst", rate = 50000 }
TOML

# Children of a process (every thread's list).
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
# argv[1] of a process.
command_of() { tr '\0' '\n' < /proc/"$1"/cmdline 2>/dev/null | sed -n 2p; }
# "VmRSS RssFile" in KiB (RssFile: the binary's and libc's pages, shared between processes).
rss_kib() { awk '/^VmRSS/ { r = $2 } /^RssFile/ { f = $2 } END { print r + 0, f + 0 }' /proc/"$1"/status 2>/dev/null; }
# The harness processes of the run: the coordinator, then its workers.
harness_pids() {
    echo "$RUN_PID"
    for c in $(children "$RUN_PID"); do
        [ "$(command_of "$c")" = worker ] && echo "$c"
    done
    return 0
}
# "total_kib coordinator_kib workers_kib processes file_kib" now.
sample() {
    harness_pids | while read -r p; do echo "$p $(rss_kib "$p")"; done |
        awk -v run="$RUN_PID" '{ t += $2; f += $3; n++; if ($1 == run) c = $2; else w += $2 } END { print t, c, w + 0, n, f }'
}
# Client connections to the embedded target now.
established() { ss -Htan state established "( dport = :$port )" | wc -l; }
# The largest total of three samples a second apart; with "idle", only samples taken
# while no connection is open.
settled() {
    for _ in 1 2 3; do
        before=$(established)
        now=$(sample)
        if [ "$1" = held ] || { [ "$before" -eq 0 ] && [ "$(established)" -eq 0 ]; }; then echo "$now"; fi
        sleep 1
    done | sort -n | tail -1
}

run_once() {
    workers=$1
    "$BIN" run "$WORK/s.toml" --workers "$workers" --quiet --json "$WORK/out.json" > "$WORK/report.txt" 2>&1 &
    RUN_PID=$!
    # The embedded target: the `serve` child, and the port it listens on.
    serve=""
    until [ -n "$serve" ]; do
        for c in $(children "$RUN_PID"); do [ "$(command_of "$c")" = serve ] && serve=$c; done
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/report.txt"; exit 1; }
        sleep 0.05
    done
    port=""
    until [ -n "$port" ]; do
        port=$(ss -Htlnp | awk -v pid="pid=$serve," 'index($0, pid) { n = split($4, a, ":"); print a[n]; exit }')
        sleep 0.05
    done
    # Idle phase: every worker has started (they report ready before it begins).
    expect=$((workers > 1 ? workers + 1 : 1))
    until [ "$(harness_pids | wc -l)" -ge "$expect" ]; do sleep 0.05; done
    sleep 1.2
    idle=$(settled idle)
    if [ -z "$idle" ]; then echo "the idle phase was missed (a busy machine?): run again" >&2; exit 1; fi
    until [ "$(established)" -ge "$N" ]; do
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/report.txt"; exit 1; }
        sleep 0.1
    done
    sleep 2
    held=$(settled held)
    wait "$RUN_PID" || true
    RUN_PID=""
    rate=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['phases']; print(next(x['achieved_rate_per_s'] for x in p if x['name']=='ramp'))" "$WORK/out.json")
    echo "$workers $idle $held $rate" >> "$WORK/results"
}

for w in $WORKERS; do run_once "$w"; done

awk -v n="$N" '
    # $1 workers; idle: $2 total $3 coordinator $4 workers $5 processes $6 file-backed;
    # held: $7..$11 the same; $12 connects/s. RSS in KiB.
    function mib(b) { return b / 1048576 }
    {
        w = $1; it = $2 * 1024; ic = $3 * 1024; iw = $4 * 1024; p = $5; if_ = $6 * 1024
        ht = $7 * 1024; hc = $8 * 1024; hw = $9 * 1024; hf = $11 * 1024; rate = $12
        marginal = (ht - it) / n
        printf "--workers %d: %d processes, %d connections, ramp %.0f connects/s\n", w, p, n, rate
        printf "  idle RSS   %6.1f MiB, %.1f MiB per process", mib(it), mib(it / p)
        if (w > 1) printf " (coordinator %.1f, worker %.1f)", mib(ic), mib(iw / (p - 1))
        printf "; file-backed %.1f MiB per process\n", mib(if_ / p)
        printf "  held RSS   %6.1f MiB", mib(ht)
        if (w > 1) printf " (coordinator %.1f, workers %.1f)", mib(hc), mib(hw)
        printf "; file-backed %.1f MiB per process\n", mib(hf / p)
        printf "  marginal   %6.0f bytes per connection ((held - idle) / N)\n", marginal
        printf "  overall    %6.0f bytes per connection (held / N)\n", ht / n
        # The projection: from the run with the most worker processes (else the only one).
        if (w >= pw) {
            pw = w
            if (w > 1) { coord = ic; coord_growth = (hc - ic) / n; wbase = iw / (p - 1); m = (hw - iw) / n }
            else { coord = ic; coord_growth = 0; wbase = ic; m = marginal }
        }
    }
    END {
        total = coord + 100000 * coord_growth + 6 * wbase + 100000 * m
        printf "projection, 100000 connections over 6 workers + coordinator (from --workers %d):\n", pw
        printf "  workers: 6 x %.1f MiB + 100000 x %.0f bytes; coordinator: %.1f MiB + 100000 x %.0f bytes\n",
            mib(wbase), m, mib(coord), coord_growth
        printf "  = %.1f MiB = %.0f bytes (%.2f KiB) per connection (goal: at most 1536)\n",
            mib(total), total / 100000, total / 102400000
    }' "$WORK/results"
