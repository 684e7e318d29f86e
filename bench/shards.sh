#!/bin/sh
# Benchmark: a sharded run on this machine, N shards meeting at a rendezvous, against
# one `sockcap serve`, then `sockcap merge`; and the merge alone over many shards.
#
#   bench/shards.sh                    # 60,000 MQTT connections over 3 shards
#   SHARDS=4 RATE=20000 bench/shards.sh 80000
#   COPIES=100 bench/shards.sh         # also merge 100 shard reports (default 100)
#
# Prints: how far apart the shards started phase 1 (by their clocks, one machine), each
# shard's ramp, `ss` during the hold against the merged census, the merged ramp (rate,
# connect/CONNACK percentiles, peak of the summed census series), the merge's wall time,
# and the time to merge COPIES shard reports. The shards share this machine's 2 cores
# with the target, so rates are the machine's, not a fleet's.
set -eu
cd "$(dirname "$0")/.."
TOTAL=${1:-60000}
SHARDS=${SHARDS:-3}
RATE=${RATE:-15000}
COPIES=${COPIES:-100}
cargo build --release -q
BIN=$PWD/target/release/sockcap
WORK=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
RPORT=$(free_port)
TARGET_PROCS=$(( TOTAL / 15000 + 1 ))
"$BIN" serve --listen 127.0.0.1:"$PORT" --workers "$TARGET_PROCS" > "$WORK/serve.log" 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 50); do grep -q listening "$WORK/serve.log" && break; sleep 0.1; done

cat > "$WORK/s.toml" <<TOML
name = "bench: $TOTAL MQTT connections over $SHARDS shards"
target = "127.0.0.1:$PORT"
protocol = "mqtt"
sample_every = "1s"
[mqtt]
keep_alive = "120s"
[[phase]]
name = "ramp"
connect = { count = $TOTAL, rate = $RATE, timeout = "30s" }
expect = { established = "== $TOTAL" }
[[phase]]
name = "hold"
hold = "8s"
expect = { established = "== $TOTAL" }
[[phase]]
name = "close"
close = { how = "rst", rate = 200000 }
TOML

echo "== $TOTAL connections, $SHARDS shards, asked $RATE/s, target: $TARGET_PROCS serve processes"
RUNS=""
i=0
while [ "$i" -lt "$SHARDS" ]; do
    "$BIN" run "$WORK/s.toml" --shard "$i/$SHARDS" --rendezvous 127.0.0.1:"$RPORT" --rendezvous-timeout 60s \
        --json "$WORK/shard-$i.json" --quiet > "$WORK/shard-$i.out" 2> "$WORK/shard-$i.err" &
    RUNS="$RUNS $!"
    i=$((i + 1))
done
PIDS="$PIDS $RUNS"
# During the hold: every shard's connections, as ss counts them.
for _ in $(seq 600); do
    n=$(ss -Htn state established "( dst 127.0.0.1:$PORT )" | wc -l)
    [ "$n" -ge "$TOTAL" ] && break
    sleep 0.1
done
sleep 2
SS_HELD=$(ss -Htn state established "( dst 127.0.0.1:$PORT )" | wc -l)
for p in $RUNS; do wait "$p" || echo "a shard exited with $?"; done

START=$(date +%s%N)
"$BIN" merge --expect-shards "$SHARDS" "$WORK"/shard-*.json --json "$WORK/merged.json" > "$WORK/merged.txt" || echo "merge exited with $?"
MERGE_MS=$(( ($(date +%s%N) - START) / 1000000 ))

python3 - "$WORK" "$SHARDS" "$SS_HELD" "$MERGE_MS" <<'PY'
import json, sys
work, shards, ss_held, merge_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
parts = [json.load(open(f"{work}/shard-{i}.json")) for i in range(shards)]
starts = [p["shard"]["start_unix_us"] for p in parts]
print(f"start of phase 1: shards {max(starts) - min(starts)} µs apart (one machine's clock)")
for p in parts:
    r = p["phases"][0]
    src = p["scenario"]["sources"]
    srcs = f"{src[0]}..{src[-1]} ({len(src)})" if src else "kernel's choice"
    print(f"  shard {p['shard']['index']}: {r['succeeded']:,} in {r['duration_ms']} ms, {r['achieved_rate_per_s']:,.0f}/s, "
          f"{p['scenario']['workers']} worker(s), sources {srcs}")
m = json.load(open(f"{work}/merged.json"))
ramp, hold = m["phases"][0], m["phases"][1]
c, h = ramp["latency_us"]["connect"], ramp["latency_us"]["handshake"]
peak = max((s["client"]["established"] for ph in m["phases"] for s in ph["samples"]), default=0)
print(f"merged ramp: {ramp['succeeded']:,} of {ramp['planned']:,}, {ramp['achieved_rate_per_s']:,.0f}/s, "
      f"errors {sum(ramp['errors'].values())}; connect p50/p99 {c['p50']/1000:.1f}/{c['p99']/1000:.1f} ms, "
      f"CONNACK p50/p99 {h['p50']/1000:.1f}/{h['p99']/1000:.1f} ms (count {h['count']:,})")
print(f"held: ss {ss_held:,} established during the hold; merged hold census {hold['census']['client']['established']:,}; "
      f"peak of the summed series {peak:,}")
print(f"merge of {shards} reports: {merge_ms} ms, verdict passed={m['passed']}")
PY

# The merge alone, over many shards: copies of one shard's report as indices 0..COPIES-1.
python3 - "$WORK" "$COPIES" <<'PY'
import json, sys
work, copies = sys.argv[1], int(sys.argv[2])
base = json.load(open(f"{work}/shard-0.json"))
for i in range(copies):
    base["shard"]["index"], base["shard"]["count"] = i, copies
    base["shard"]["census_scope"] = f"copy {i}"
    json.dump(base, open(f"{work}/copy-{i}.json", "w"))
PY
START=$(date +%s%N)
"$BIN" merge --expect-shards "$COPIES" "$WORK"/copy-*.json --json "$WORK/copies.json" > /dev/null || true
COPY_MS=$(( ($(date +%s%N) - START) / 1000000 ))
SIZE=$(wc -c < "$WORK/shard-0.json")
echo "merge of $COPIES shard reports ($SIZE bytes each): $COPY_MS ms"
