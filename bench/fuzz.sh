#!/bin/sh
# Fuzzing: each cargo-fuzz target in fuzz/ for SECONDS (default 600), one after
# another, from the checked-in seeds in fuzz/corpus/TARGET; prints per target the
# executions, the findings (crash, timeout, out-of-memory and leak inputs libFuzzer
# saved in fuzz/artifacts/TARGET during this run) and the command.
#
#   bench/fuzz.sh              (every target, 600 s each)
#   bench/fuzz.sh 60
#   TARGETS="plan report" bench/fuzz.sh 600
#   FUZZ_FLAGS="-s none" TARGETS=report bench/fuzz.sh   (no debug assertions: as released)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds with
# debug assertions (integer overflow panics) and no sanitizer: the parsers are safe
# Rust, so what a fuzzer can find is a panic, a hang or an allocation, not memory
# corruption. libFuzzer stops a target at its first finding; reproduce it with
# `cargo +nightly fuzz run -a -s none TARGET fuzz/artifacts/TARGET/FILE`, fix it, and
# keep the input as a unit test. New inputs go to a working corpus
# ($FUZZ_WORK/TARGET, by default under the target directory), not to the checked-in
# seeds: copy the few worth keeping with `cargo +nightly fuzz cmin`.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-600}
TARGETS=${TARGETS:-"mqtt_client mqtt_server plan report sock_diag"}
WORK=${FUZZ_WORK:-${CARGO_TARGET_DIR:-fuzz/target}/fuzz-corpus}
FLAGS=${FUZZ_FLAGS:-"-a -s none"}
# shellcheck disable=SC2086
cargo +nightly fuzz build $FLAGS
printf '%-12s %14s %9s  %s\n' target executions findings command
for t in $TARGETS; do
    mkdir -p "$WORK/$t" "fuzz/artifacts/$t"
    log="$WORK/$t.log"
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    cmd="cargo +nightly fuzz run $FLAGS $t $WORK/$t fuzz/corpus/$t -- -max_total_time=$SECS -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
    # shellcheck disable=SC2086
    $cmd > "$log" 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
    fi
    found=$(($(ls "fuzz/artifacts/$t" | wc -l) - before))
    printf '%-12s %14s %9s  %s\n' "$t" "${execs:-?}" "$found" "$cmd"
    if [ "$found" -gt 0 ]; then
        grep -m1 -A3 -E "panicked|ERROR: libFuzzer" "$log" | sed 's/^/    /'
        ls -t "fuzz/artifacts/$t" | head -"$found" | sed "s|^|    fuzz/artifacts/$t/|"
    fi
done
