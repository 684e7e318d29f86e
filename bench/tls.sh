#!/bin/sh
# Benchmark: TCP against TLS (and WebSocket over TLS) on the embedded target. For each transport, MQTT clients
# in one process (--workers 1): an idle phase, a ramp to N connections, a hold, an RST
# close. Prints per transport:
#   - the ramp's achieved connect rate, and p50/p99 of each layer (connect = TCP
#     established, tls = TLS handshake done, ws = upgrade answered, handshake = CONNACK),
#     from the JSON report;
#   - sockcap's CPU seconds per 1,000 handshakes: utime + stime of `sockcap run` (client)
#     and of `sockcap serve` (target), from /proc/PID/stat, over the ramp (idle → all up,
#     or the count still for 3 s), per connection the ramp established (failed attempts
#     cost CPU too: an overloaded run reads high);
#   - user memory per held connection on both sides: (VmRSS held − VmRSS idle) / the
#     connections established, as bench/memory.sh measures it (see there).
# TLS here is TLS 1.3 with the target's ECDSA P-256 certificate (made by rcgen), full
# handshakes unless RESUMPTION=true (tickets resumed across the ramp's connections).
#
#   bench/tls.sh                     (builds --release; N=10000, RATE=1000)
#   N=5000 RATE=1000 RESUMPTION=true bench/tls.sh
#   TARGET=mosquitto TRANSPORTS="tcp tls" bench/tls.sh
#                                    (a mosquitto this script starts on free loopback ports,
#                                    with a TLS listener whose CA and certificate openssl makes
#                                    here; Debian's mosquitto has no WebSocket: no ws/wss)
set -eu
cd "$(dirname "$0")/.."
N=${N:-10000}
RATE=${RATE:-1000}
HOLD=${HOLD:-10s}
RESUMPTION=${RESUMPTION:-false}
TRANSPORTS=${TRANSPORTS:-"tcp tls wss"}
TARGET=${TARGET:-embedded}
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/sockcap
WORK=$(mktemp -d)
RUN_PID=""
MOSQ_PID=""
cleanup() {
    if [ -n "$RUN_PID" ]; then kill "$RUN_PID" 2>/dev/null || true; fi
    if [ -n "$MOSQ_PID" ]; then kill "$MOSQ_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
TICK=$(getconf CLK_TCK)

# mosquitto: a CA and a certificate for 127.0.0.1 (openssl), a plain and a TLS listener on
# free ports, descriptors up to the hard limit; started anew for each transport.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [ "$TARGET" = mosquitto ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
        -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' > "$WORK/san.ext"
    openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
        -days 2 -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null
    # mosquitto started by root drops to its own user, which must read them.
    chmod a+rx "$WORK"
    chmod a+r "$WORK"/ca.pem "$WORK"/server.pem "$WORK"/server.key
    PLAIN_PORT=$(free_port)
    TLS_PORT=$(free_port)
    cat > "$WORK/mosquitto.conf" <<CONF
persistence false
max_connections -1
listener $PLAIN_PORT 127.0.0.1
allow_anonymous true
listener $TLS_PORT 127.0.0.1
allow_anonymous true
cafile $WORK/ca.pem
certfile $WORK/server.pem
keyfile $WORK/server.key
CONF
fi

scenario() {
    tls=""
    case $1 in
        tls | wss) tls="transport = \"$1\"
[tls]
resumption = $RESUMPTION" ;;
        ws) tls="transport = \"ws\"" ;;
    esac
    target="embedded"
    if [ "$TARGET" = mosquitto ]; then
        case $1 in
            tcp) target="127.0.0.1:$PLAIN_PORT" ;;
            tls) target="127.0.0.1:$TLS_PORT"
                 tls="$tls
ca = \"$WORK/ca.pem\"" ;;
            *) echo "mosquitto has no WebSocket listener: TRANSPORTS may hold tcp and tls" >&2; exit 2 ;;
        esac
    fi
    cat <<TOML
name = "bench: $N MQTT connections over $1"
target = "$target"
protocol = "mqtt"
sample_every = "5s"
$tls
[mqtt]
keep_alive = "60s"
[[phase]]
name = "idle"
sleep = "5s"
[[phase]]
name = "ramp"
connect = { count = $N, rate = $RATE, timeout = "30s" }
[[phase]]
name = "hold"
hold = "$HOLD"
[[phase]]
name = "close"
close = { how = "rst", rate = 50000 }
TOML
}

children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
command_of() { tr '\0' '\n' < /proc/"$1"/cmdline 2>/dev/null | sed -n 2p; }
rss_kib() { awk '/^VmRSS/ { print $2 }' /proc/"$1"/status; }
# utime + stime in clock ticks (fields 14 and 15; the command has no spaces).
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
established() { ss -Htan state established "( dport = :$port )" | wc -l; }

run_once() {
    t=$1
    scenario "$t" > "$WORK/$t.toml"
    if [ "$TARGET" = mosquitto ]; then
        if [ -n "$MOSQ_PID" ]; then kill "$MOSQ_PID"; wait "$MOSQ_PID" 2>/dev/null || true; fi
        prlimit --nofile="$(ulimit -Hn)" mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
        MOSQ_PID=$!
        port=$PLAIN_PORT
        [ "$t" = tls ] && port=$TLS_PORT
        until ss -Htln "( sport = :$port )" | grep -q .; do
            kill -0 "$MOSQ_PID" 2>/dev/null || { cat "$WORK/mosquitto.log"; exit 1; }
            sleep 0.05
        done
    fi
    "$BIN" run "$WORK/$t.toml" --workers 1 --quiet --json "$WORK/$t.json" > "$WORK/$t.txt" 2>&1 &
    RUN_PID=$!
    serve=$MOSQ_PID
    until [ -n "$serve" ]; do
        for c in $(children "$RUN_PID"); do [ "$(command_of "$c")" = serve ] && serve=$c; done
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/$t.txt"; exit 1; }
        sleep 0.05
    done
    if [ "$TARGET" != mosquitto ]; then
        port=""
        until [ -n "$port" ]; do
            port=$(ss -Htlnp | awk -v pid="pid=$serve," 'index($0, pid) { n = split($4, a, ":"); print a[n]; exit }')
            sleep 0.05
        done
    fi
    sleep 2
    idle="$(rss_kib "$RUN_PID") $(rss_kib "$serve") $(cpu_ticks "$RUN_PID") $(cpu_ticks "$serve")"
    # All N up, or (an overloaded run connects fewer: the report says how many) the count
    # at least half way and still for 3 s: the ramp is over, the hold has begun.
    last=-1
    still=0
    while [ "$(established)" -lt "$N" ]; do
        kill -0 "$RUN_PID" 2>/dev/null || { cat "$WORK/$t.txt"; exit 1; }
        now=$(established)
        if [ "$now" -eq "$last" ] && [ "$now" -ge $((N / 2)) ]; then still=$((still + 1)); else still=0; fi
        [ "$still" -ge 30 ] && break
        last=$now
        sleep 0.1
    done
    ramped="$(cpu_ticks "$RUN_PID") $(cpu_ticks "$serve")"
    sleep 3
    held="$(rss_kib "$RUN_PID") $(rss_kib "$serve")"
    wait "$RUN_PID" || true
    RUN_PID=""
    figures=$(python3 - "$WORK/$t.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ramp = next(p for p in r["phases"] if p["name"] == "ramp")
lat = ramp["latency_us"]
def ms(layer, q):
    l = lat.get(layer, {})
    return "%.2f" % (l[q] / 1000) if l.get("count") else "-"
print(ramp["achieved_rate_per_s"], ramp["succeeded"], ramp.get("tls_resumed", 0),
      ms("connect", "p50"), ms("connect", "p99"), ms("tls", "p50"), ms("tls", "p99"),
      ms("handshake", "p50"), ms("handshake", "p99"), ms("ws", "p50"), ms("ws", "p99"))
PY
)
    echo "$t $idle $ramped $held $figures" >> "$WORK/results"
}

for t in $TRANSPORTS; do run_once "$t"; done

awk -v n="$N" -v tick="$TICK" -v rate="$RATE" '
    # $1 transport; idle: $2 client KiB $3 target KiB $4 client ticks $5 target ticks;
    # ramped: $6 client ticks $7 target ticks; held: $8 client KiB $9 target KiB;
    # $10 rate $11 connected $12 resumed; ms: $13 $14 connect, $15 $16 tls, $17 $18 handshake,
    # $19 $20 ws
    {
        printf "%s: %d of %d connected at %.0f/s (asked %s)", $1, $11, n, $10, rate
        if ($1 == "tls" || $1 == "wss") printf ", %d resumed", $12
        printf "\n  p50/p99 ms   connect %s/%s  tls %s/%s  ws %s/%s  handshake %s/%s\n", $13, $14, $15, $16, $19, $20, $17, $18
        up = $11 > 0 ? $11 : 1
        printf "  CPU s per 1000 handshakes   client %.3f  target %.3f\n",
            ($6 - $4) / tick / up * 1000, ($7 - $5) / tick / up * 1000
        printf "  memory per held connection   client %.0f bytes  target %.0f bytes\n",
            ($8 - $2) * 1024 / up, ($9 - $3) * 1024 / up
    }' "$WORK/results"
