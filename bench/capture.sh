#!/usr/bin/env bash
# Capture throughput and memory of bin-server against the shared harness' bare axum baseline.
#
#   bench/capture.sh            # both: throughput ratio, then memory per stored request
#   bench/capture.sh rps        # only the throughput comparison
#   bench/capture.sh mem        # only the memory figures
#
# Throughput: ../shared/bench/compare.sh, ABBA-alternating, baseline `POST /ok` (reads the body,
# answers 200) vs a bin-server capture URL (bin created first, default per-bin cap), each server
# pinned to CPU 0 and wrk to CPU 1. Prints the capture/baseline ratio (target >= 0.85).
# Memory: RSS growth per stored 1 KiB request (target <= 1,536 bytes), measured twice:
#   1. with the harness' mem.sh: 100,000 requests into one bin (cap raised to hold them all);
#   2. 100,000 requests spread over 100 bins (1,000 each, the default cap) by bench/spread.lua,
#      with RSS read the same way mem.sh does.
# Needs wrk (Debian package) and taskset; everything targets 127.0.0.1 and every run is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="${HOOKBIN_BENCH_HARNESS:-$ROOT/../shared/bench}"
[[ -x "$HARNESS/compare.sh" ]] || { echo "capture.sh: harness not found at $HARNESS" >&2; exit 2; }
command -v wrk >/dev/null || { echo "capture.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
export RUN_DIR="${RUN_DIR:-${TMPDIR:-/tmp}/hookbin-bench}"
mkdir -p "$RUN_DIR"
WHAT="${1:-all}"
BASE_PORT=3900
HB_PORT=3901

echo "== building (release)" >&2
CARGO_TARGET_DIR="$ROOT/target/bench-baseline" cargo build --release -q \
  --manifest-path "$HARNESS/baseline/Cargo.toml"
BASELINE="$ROOT/target/bench-baseline/release/baseline"
cargo build --release -q -p bin-server --manifest-path "$ROOT/Cargo.toml"
HOOKBIN="$ROOT/target/release/bin-server"

cleanup() { "$HARNESS/stop.sh" baseline; "$HARNESS/stop.sh" hookbin; }
trap cleanup EXIT

start_hookbin() {
  "$HARNESS/stop.sh" hookbin
  RUST_LOG=warn "$HARNESS/serve.sh" hookbin "127.0.0.1:$HB_PORT" -- "$HOOKBIN" --port "$HB_PORT" "$@" >/dev/null
}

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

if [[ "$WHAT" == all || "$WHAT" == rps ]]; then
  echo "== throughput: baseline POST /ok vs bin-server capture" >&2
  BIND="127.0.0.1:$BASE_PORT" "$HARNESS/serve.sh" baseline "127.0.0.1:$BASE_PORT" -- "$BASELINE" >/dev/null
  start_hookbin
  curl -sf -X PUT "http://127.0.0.1:$HB_PORT/api/bins/bench" -H 'Content-Type: application/json' -d '{}' >/dev/null
  SERVER_PID_A="$RUN_DIR/baseline.pid" SERVER_PID_B="$RUN_DIR/hookbin.pid" \
    "$HARNESS/compare.sh" "http://127.0.0.1:$BASE_PORT/ok" "http://127.0.0.1:$HB_PORT/b/bench" baseline capture \
    | tee "$RUN_DIR/compare.out"
  "$HARNESS/stop.sh" baseline
fi

if [[ "$WHAT" == all || "$WHAT" == mem ]]; then
  echo "== memory 1/2: mem.sh, 100,000 requests into one bin" >&2
  start_hookbin --max-requests-per-bin 100000
  curl -sf -X PUT "http://127.0.0.1:$HB_PORT/api/bins/mem" -H 'Content-Type: application/json' -d '{}' >/dev/null
  COUNT_CMD="curl -s http://127.0.0.1:$HB_PORT/metrics | awk '/^hookbin_requests_stored /{print \$2}'" \
    "$HARNESS/mem.sh" "http://127.0.0.1:$HB_PORT/b/mem" "$(cat "$RUN_DIR/hookbin.pid")" 100000

  echo "== memory 2/2: 100,000 requests over 100 bins (1,000 each)" >&2
  start_hookbin
  pid="$(cat "$RUN_DIR/hookbin.pid")"
  for i in $(seq 1 100); do
    curl -sf -X PUT "http://127.0.0.1:$HB_PORT/api/bins/mem-$i" -H 'Content-Type: application/json' -d '{}' >/dev/null
  done
  before=$(rss_kib "$pid")
  done_file="$RUN_DIR/spread.done"; rm -f "$done_file"
  BODY_FILE="$HARNESS/body-1k.json" BINS=100 PER_BIN=1000 DONE_FILE="$done_file" \
    timeout -k 5 300 taskset -c 1 wrk -t1 -c16 -d280s --timeout 10s -s "$ROOT/bench/spread.lua" \
    "http://127.0.0.1:$HB_PORT/" > "$RUN_DIR/spread.out" 2>&1 &
  wpid=$!
  # wrk sleeps out its whole -d even after every thread stopped: interrupt it once done.
  while kill -0 "$wpid" 2>/dev/null; do
    if [[ -e "$done_file" ]]; then sleep 0.5; pkill -INT -P "$wpid" wrk 2>/dev/null || true; break; fi
    sleep 0.2
  done
  wait "$wpid" 2>/dev/null || true
  sleep 2
  after=$(rss_kib "$pid")
  stored=$(curl -s "http://127.0.0.1:$HB_PORT/metrics" | awk '/^hookbin_requests_stored /{print $2}')
  python3 - "$before" "$after" "$stored" <<'PY'
import json, sys
b, a, n = map(int, sys.argv[1:4])
print(json.dumps({"spread_bins": 100, "stored": n, "rss_before_kib": b, "rss_after_kib": a,
                  "bytes_per_request": round((a - b) * 1024 / n, 1) if n else None}, separators=(",", ":")))
PY
fi
