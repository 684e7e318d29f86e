#!/bin/sh
# The HTML report in a real browser: run a scenario with --html, load the page in
# headless chromium, check that its script drew every chart without an error, and
# take a screenshot to look at.
#
#   bench/html-screenshot.sh [SCENARIO] [OUT_DIR]
#       SCENARIO  default scenarios/quickstart.toml (embedded target, ~10 s)
#       OUT_DIR   default /tmp/sockcap-html; gets report.html, report.json, report.png, dom.html
#   HEIGHT=4000 bench/html-screenshot.sh      a taller window (the default 2400 px shows the charts)
#
# Needs chromium (apt-get install -y chromium). The page loads nothing from the
# network; chromium runs with its background networking off and a throwaway profile.
# Exit 1 when the page did not report data-sockcap-ready or reported data-sockcap-error.
set -eu
cd "$(dirname "$0")/.."
SCENARIO=${1:-scenarios/quickstart.toml}
OUT=${2:-/tmp/sockcap-html}
HEIGHT=${HEIGHT:-2400}
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install -y chromium" >&2; exit 2; }
cargo build -q
mkdir -p "$OUT"
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT

status=0
./target/debug/sockcap run "$SCENARIO" --quiet --json "$OUT/report.json" --html "$OUT/report.html" >"$OUT/stdout.txt" || status=$?
# 0 passed, 1 an expectation failed: either way the report was written.
[ "$status" -le 1 ] || { echo "sockcap run exited $status" >&2; cat "$OUT/stdout.txt" >&2; exit 1; }

chromium_headless() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$PROFILE" "$@" 2>/dev/null
}
URL="file://$(realpath "$OUT/report.html")"
chromium_headless --dump-dom "$URL" >"$OUT/dom.html"
chromium_headless --window-size=1400,"$HEIGHT" --screenshot="$OUT/report.png" "$URL" >/dev/null

if grep -q 'data-sockcap-error=' "$OUT/dom.html"; then
    echo "the page's script failed: $(grep -o 'data-sockcap-error="[^"]*"' "$OUT/dom.html")" >&2
    exit 1
fi
charts=$(grep -o '<body[^>]*data-sockcap-ready="[0-9]*"' "$OUT/dom.html" | grep -o '[0-9]*"$' | tr -d '"') || true
if [ -z "$charts" ] || [ "$charts" -lt 1 ]; then
    echo "the page's script did not finish drawing (no data-sockcap-ready on <body>)" >&2
    exit 1
fi
echo "$(stat -c %s "$OUT/report.html") bytes, $charts charts drawn"
echo "page:       $OUT/report.html"
echo "screenshot: $OUT/report.png"
