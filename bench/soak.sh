#!/bin/sh
# Soak: DURATION (default 600 s) of churn plus held MQTT connections with keep-alive
# against the embedded target, sampling the RSS and the descriptors of every sockcap
# process (the coordinator `sockcap run`, its `sockcap worker`s, the embedded target
# `sockcap serve` and its workers) from /proc every INTERVAL (default 10 s).
#
#   bench/soak.sh                          (builds --release; 600 s)
#   DURATION=120 HELD=500 RATE=100 bench/soak.sh
#   BIN=target/debug/sockcap bench/soak.sh (no build)
#   SAMPLES=/tmp/soak.tsv bench/soak.sh    (keep the samples, and the report as /tmp/soak.tsv.json)
#
# The scenario: HELD connections (default 2,000) with keep-alive KEEP_ALIVE (10 s)
# opened in phase 1 and held to the end, while PHASES (10) churn phases connect and close
# (FIN) RATE (200) connections a second; then every connection is closed.
# Prints each process's RSS and descriptors at one minute and at the end of the
# churn, its growth in between (goal: under 1 %), and the errors of the run (goal: 0:
# connection errors, drops and failed expectations, from the JSON report).
set -eu
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-10}
HELD=${HELD:-2000}
RATE=${RATE:-200}
KEEP_ALIVE=${KEEP_ALIVE:-10s}
WORKERS=${WORKERS:-auto}
PHASES=${PHASES:-10}
if [ -z "${BIN:-}" ]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-target}/release/sockcap
fi
WORK=$(mktemp -d)
RUN_PID=""
cleanup() {
    if [ -n "$RUN_PID" ]; then kill "$RUN_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The churn phases share the time left after the ramp.
PHASE_S=$(((DURATION - 5) / PHASES))
{
    cat <<TOML
name = "soak: $HELD held MQTT connections, churn at $RATE/s"
target = "embedded"
protocol = "mqtt"
sample_every = "5s"
[mqtt]
keep_alive = "$KEEP_ALIVE"
[[phase]]
name = "ramp"
connect = { count = $HELD, rate = 1000 }
expect = { established = "== $HELD", errors = "== 0" }
TOML
    for i in $(seq "$PHASES"); do
        cat <<TOML
[[phase]]
name = "churn-$i"
churn = { rate = $RATE, duration = "${PHASE_S}s" }
expect = { errors = "== 0", drops = "== 0" }
TOML
    done
    cat <<TOML
[[phase]]
name = "close"
close = { how = "fin", rate = 5000 }
expect = { errors = "== 0" }
TOML
} > "$WORK/soak.toml"

# Every thread's children of a process.
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
# The run and all its descendants.
tree() {
    echo "$1"
    for c in $(children "$1"); do tree "$c"; done
}
# argv[1] of a process: run, worker or serve.
command_of() { tr '\0' '\n' < /proc/"$1"/cmdline 2>/dev/null | sed -n 2p; }

"$BIN" run "$WORK/soak.toml" --workers "$WORKERS" --quiet --json "$WORK/report.json" > "$WORK/report.txt" 2>&1 &
RUN_PID=$!
start=$(date +%s)
# One line per process and sample: seconds pid command rss_kib fds.
while kill -0 "$RUN_PID" 2>/dev/null; do
    t=$(($(date +%s) - start))
    [ "$t" -gt "$DURATION" ] && break
    for p in $(tree "$RUN_PID"); do
        rss=$(awk '/^VmRSS/ { print $2 }' /proc/"$p"/status 2>/dev/null || true)
        fds=$(ls /proc/"$p"/fd 2>/dev/null | wc -l)
        cmd=$(command_of "$p")
        case "$cmd" in run | worker | serve) [ -n "$rss" ] && echo "$t $p $cmd $rss $fds" ;; esac
    done >> "$WORK/samples"
    sleep "$INTERVAL"
done
status=0
wait "$RUN_PID" || status=$?
RUN_PID=""
tail -5 "$WORK/report.txt"
echo
echo "samples every ${INTERVAL}s over ${DURATION}s; growth from the first sample at or after 60 s to the last"
awk '
    $1 >= 60 && !($2 in first) { first[$2] = $1; rss0[$2] = $4; fd0[$2] = $5; cmd[$2] = $3; order[++n] = $2 }
    $1 >= 60 { last[$2] = $1; rss1[$2] = $4; fd1[$2] = $5; if ($4 > peak[$2]) peak[$2] = $4 }
    END {
        printf "%-8s %-7s %11s %11s %11s %8s %8s %8s %8s\n", "pid", "process", "RSS KiB 1m", "RSS KiB end", "RSS peak", "growth", "fds 1m", "fds end", "growth"
        for (i = 1; i <= n; i++) {
            p = order[i]
            printf "%-8s %-7s %11d %11d %11d %7.2f%% %8d %8d %7.2f%%\n", p, cmd[p], rss0[p], rss1[p], peak[p],
                100 * (rss1[p] - rss0[p]) / rss0[p], fd0[p], fd1[p], fd0[p] ? 100 * (fd1[p] - fd0[p]) / fd0[p] : 0
            t0 += rss0[p]; t1 += rss1[p]
        }
        if (t0) printf "all      %-7s %11d %11d %11s %7.2f%%\n", "", t0, t1, "", 100 * (t1 - t0) / t0
    }' "$WORK/samples"
echo "RSS KiB each minute:"
awk '$1 % 60 < '"$INTERVAL"' { if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2; cmd[$2] = $3 } line[$2] = line[$2] " " $4 }
    END { for (i = 1; i <= n; i++) printf "  %-7s%s\n", cmd[order[i]], line[order[i]] }' "$WORK/samples"
if [ -n "${SAMPLES:-}" ]; then cp "$WORK/samples" "$SAMPLES"; cp "$WORK/report.json" "$SAMPLES.json"; fi
python3 - "$WORK/report.json" "$status" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
errors = drops = 0
for p in report["phases"]:
    e = sum(p["errors"].values()) + sum(p["other_errnos"].values())
    errors += e
    drops += p["drops"]
    if e or p["drops"]:
        kinds = {k: v for k, v in p["errors"].items() if v}
        print(f"phase {p['name']}: {e} errors {kinds} {p['other_errnos'] or ''}, {p['drops']} drops")
failed = [f"{p['name']}: {x['expr']}" for p in report["phases"] for x in p["expectations"] if not x["passed"]]
ops = sum(p["succeeded"] for p in report["phases"])
print(f"operations succeeded {ops}; errors {errors}; drops {drops}; failed expectations {len(failed)}; exit {sys.argv[2]}")
for f in failed:
    print("  failed:", f)
PY
