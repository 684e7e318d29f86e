#!/bin/sh
# Benchmark: a reconnect storm. N MQTT clients held on sockcap's embedded target,
# which is killed (SIGKILL, all its processes at once) and started again on the same
# port after 1 s (scenarios/reconnect-storm.toml, scaled); how long until every client
# is back, with no jitter or full jitter on the backoff.
#
#   bench/reconnect-storm.sh N JITTER        e.g. bench/reconnect-storm.sh 20000 full
#                                            (JITTER: none, full or equal; builds --release)
#
# Prints: time until all are back (the first census sample with N established after
# the kill, and the report's recovery figures when it has them), reconnect attempts,
# the kernel's ListenOverflows over the storm phase, and the run's verdict.
# Client and target processes are as many as the descriptor limit needs (--workers auto).
set -eu
cd "$(dirname "$0")/.."
N=${1:?usage: bench/reconnect-storm.sh N JITTER}
JITTER=${2:?usage: bench/reconnect-storm.sh N JITTER (none, full or equal)}
RATE=${RATE:-10000}
HOLD=${HOLD:-$((30 + N / 2000))s}
SAMPLE=${SAMPLE:-250ms}
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/sockcap
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

sed -e "s/count = 2000, rate = 2000/count = $N, rate = $RATE, timeout = \"30s\"/" \
    -e "s/\"== 2000\"/\"== $N\"/g" \
    -e "s/jitter = \"full\"/jitter = \"$JITTER\"/" \
    -e "s/hold = \"20s\"/hold = \"$HOLD\"/" \
    -e "s/sample_every = \"250ms\"/sample_every = \"$SAMPLE\"/" \
    scenarios/reconnect-storm.toml > "$WORK/s.toml"
grep -q "count = $N" "$WORK/s.toml" || { echo "scenarios/reconnect-storm.toml changed: update this script" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"
set +e
"$BIN" run "$WORK/s.toml" --json "$WORK/out.json" --quiet > "$WORK/report.txt" 2> "$WORK/stderr.txt"
CODE=$?
set -e
[ -s "$WORK/out.json" ] || { cat "$WORK/report.txt" "$WORK/stderr.txt" >&2; exit 1; }

python3 - "$WORK/out.json" "$N" "$JITTER" "$CODE" <<'PY'
import json, sys
report, n, jitter, code = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3], sys.argv[4]
storm = next(p for p in report["phases"] if p["name"] == "storm")
fault = next((e for e in storm.get("events", []) if e["kind"] == "fault"), None)
print(f"reconnect storm: {n:,} MQTT clients, jitter {jitter}, workers {report['scenario']['workers']}")
if fault is None:
    print("  no fault event in the report")
    sys.exit(1)
print(f"  fault: {fault['what']}: {'ok' if fault['ok'] else 'FAILED: ' + str(fault['error'])} ({fault['duration_ms']} ms)")
killed = fault["started_ms"]
back = next((s["t_ms"] for s in storm["samples"] if s["t_ms"] > killed + fault["duration_ms"] and s["client"].get("established", 0) >= n), None)
print(f"  {fault['output_tail']}")
up = killed + fault["duration_ms"]
print(f"  all back (first census sample with {n:,} established): "
      + (f"{back - killed} ms after the kill, {back - up} ms after the target was up again" if back is not None else "not within the hold"))
recovery = storm.get("recovery") or {}
for key in ("peak_reconnect_rate_per_s", "last_back_ms", "recovery_us"):
    value = recovery.get(key)
    print(f"  recovery.{key}: {json.dumps(value) if value is not None else 'n/a'}")
print(f"  lost {storm['drops']:,}, reconnected {storm['reconnected']:,}, reconnect attempts {storm['reconnect_attempts']:,}")
kernel = "unobserved" if "kernel" in storm.get("unobserved", {}) else storm["kernel"].get("ListenOverflows", 0)
print(f"  kernel.ListenOverflows over the storm phase: {kernel}; ListenDrops: {storm['kernel'].get('ListenDrops', 0)}")
print(f"  census at the hold's end: client established {storm['census']['client'].get('established', 0):,}")
print(f"  verdict: {'PASSED' if report['passed'] else 'FAILED'} (exit {code})")
PY
