#!/bin/sh
# Benchmark: 15,000 MQTT clients against a real mosquitto on this machine, and the
# time of one census of those sockets against `ss` and /proc/net/tcp.
#
#   bench/mqtt-15k.sh            (needs mosquitto, ss, /usr/bin/time; builds --release)
#
# Prints: connect rate, connect / CONNACK p50 and p99, harness peak RSS per held
# connection, mosquitto RSS per client, census times.
set -eu
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-15000}
RATE=${RATE:-5000}
cargo build --release -q
BIN=target/release/sockcap
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    [ -n "${RUN_PID:-}" ] && kill "$RUN_PID" 2>/dev/null || true
    [ -n "${MQ_PID:-}" ] && kill "$MQ_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$WORK/mosquitto.conf"
ulimit -n "$(ulimit -Hn)"
mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
MQ_PID=$!
until ss -Htln "( sport = :$PORT )" | grep -q LISTEN; do sleep 0.05; done

cat > "$WORK/s.toml" <<TOML
name = "bench: $CLIENTS MQTT clients"
target = "127.0.0.1:$PORT"
protocol = "mqtt"
[mqtt]
keep_alive = "60s"
[[phase]]
name = "ramp"
connect = { count = $CLIENTS, rate = $RATE, timeout = "20s" }
expect = { established = "== $CLIENTS" }
[[phase]]
name = "hold"
hold = "15s"
[[phase]]
name = "close"
close = { how = "rst", rate = 20000 }
TOML

/usr/bin/time -f '%M' -o "$WORK/rss" "$BIN" run "$WORK/s.toml" --json "$WORK/out.json" --quiet > "$WORK/report.txt" &
RUN_PID=$!
until [ "$(ss -Htan state established "( dport = :$PORT )" | wc -l)" -ge "$CLIENTS" ]; do sleep 0.1; done
MQ_RSS=$(awk '/VmRSS/ {print $2}' /proc/$MQ_PID/status)

ms() { python3 -c "import sys; print(f'{(int(sys.argv[2])-int(sys.argv[1]))/1e6:.1f}')" "$1" "$2"; }
census_ms=""; ss_ms=""; proc_ms=""
for _ in 1 2 3 4 5; do
    t0=$(date +%s%N); "$BIN" probe --port "$PORT" --json > "$WORK/probe.json"; t1=$(date +%s%N)
    ss -tan state established | wc -l > /dev/null; t2=$(date +%s%N)
    cat /proc/net/tcp /proc/net/tcp6 > /dev/null; t3=$(date +%s%N)
    census_ms="$census_ms $(python3 -c "import json; print(round(json.load(open('$WORK/probe.json'))['elapsed_us']/1000,1))")"
    ss_ms="$ss_ms $(ms "$t1" "$t2")"; proc_ms="$proc_ms $(ms "$t2" "$t3")"
done
wait "$RUN_PID" || true
RUN_PID=""

python3 - "$WORK/out.json" "$(cat "$WORK/rss")" "$MQ_RSS" "$CLIENTS" "$census_ms" "$ss_ms" "$proc_ms" <<'PY'
import json, sys
report, rss_kb, mq_kb, n = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ramp = report["phases"][0]
c, h = ramp["latency_us"]["connect"], ramp["latency_us"]["handshake"]
print(f"clients                 {n} (passed: {report['passed']})")
print(f"ramp                    {ramp['duration_ms']/1000:.2f}s, {ramp['achieved_rate_per_s']:.0f} connects/s, errors {sum(ramp['errors'].values())}")
print(f"connect  p50/p99/p99.9  {c['p50']/1000:.2f} / {c['p99']/1000:.2f} / {c['p999']/1000:.2f} ms")
print(f"CONNACK  p50/p99/p99.9  {h['p50']/1000:.2f} / {h['p99']/1000:.2f} / {h['p999']/1000:.2f} ms")
k = ramp["kernel"]
print(f"kernel during ramp      ListenOverflows {k.get('ListenOverflows', 0)}, ListenDrops {k.get('ListenDrops', 0)}, TCPTimeouts {k.get('TCPTimeouts', 0)}")
print(f"harness peak RSS        {rss_kb/1024:.1f} MiB = {rss_kb*1024/n:.0f} bytes per held connection")
print(f"mosquitto RSS           {mq_kb/1024:.1f} MiB = {mq_kb*1024/n:.0f} bytes per client")
med = lambda s: sorted(float(x) for x in s.split())[2]
print(f"census of both sides    sockcap probe {med(sys.argv[5])} ms (in-process, median of 5)")
print(f"ss -tan state established | wc -l   {med(sys.argv[6])} ms;  cat /proc/net/tcp{{,6}}  {med(sys.argv[7])} ms")
PY
