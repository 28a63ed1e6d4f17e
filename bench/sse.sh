#!/usr/bin/env bash
# SSE fan-out: N subscribers on one bin's live stream while captures arrive at a fixed rate;
# reports captures/s achieved and capture-to-SSE latency p50/p99 seen by the subscribers.
#
#   bench/sse.sh [SUBSCRIBERS] [RATE] [SECONDS]      # default 1000 subscribers, 2000/s, 10 s
#   HOOKBIN_BENCH_REDIS=1 bench/sse.sh 100 2000 10   # two instances on one Redis: captures on A,
#                                                    # subscribers on B (issue 9: p99 <= 50 ms)
#
# Starts a release bin-server (HOOKBIN_SKIP_UI=1: the UI plays no part) pinned to CPU 0 and the
# client (tests/examples/sse_bench.rs) pinned to CPU 1, both on 127.0.0.1. Set
# HOOKBIN_SERVER_BIN to measure another build (e.g. an older binary, for a before/after).
# Latency is measured from each capture's *scheduled* send time, so a server that falls behind
# shows it as latency. Target: 1,000 subscribers at 2,000 captures/s, p99 <= 20 ms.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUBSCRIBERS="${1:-1000}"
RATE="${2:-2000}"
SECONDS_="${3:-10}"
PORT="${HOOKBIN_BENCH_PORT:-3960}"

echo "== building (release)" >&2
HOOKBIN_SKIP_UI=1 cargo build --release -q -p hookbin-tests --example sse_bench \
  --manifest-path "$ROOT/Cargo.toml"
BENCH="$ROOT/target/release/examples/sse_bench"
SERVER="${HOOKBIN_SERVER_BIN:-}"
if [[ -z "$SERVER" ]]; then
  HOOKBIN_SKIP_UI=1 cargo build --release -q -p bin-server --manifest-path "$ROOT/Cargo.toml"
  SERVER="$ROOT/target/release/bin-server"
fi
CPU0=(); CPU1=()
if command -v taskset >/dev/null; then CPU0=(taskset -c 0); CPU1=(taskset -c 1); fi
# Each subscriber is a socket on both sides.
ulimit -n "$(( SUBSCRIBERS * 2 + 1024 ))" 2>/dev/null || true

wait_port() {
  for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "sse.sh: nothing listens on $1" >&2; exit 1
}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT INT TERM
STORE=(); CAPTURE_PORT="$PORT"
if [[ -n "${HOOKBIN_BENCH_REDIS:-}" ]]; then
  # Redis and instance A (captures) share CPU 0 with instance B (subscribers).
  REDIS_PORT=$(( PORT + 10 ))
  "${CPU0[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  PIDS+=($!)
  wait_port "$REDIS_PORT"
  STORE=(--store "redis://127.0.0.1:$REDIS_PORT")
  CAPTURE_PORT=$(( PORT + 1 ))
  RUST_LOG=warn "${CPU0[@]}" "$SERVER" serve --port "$CAPTURE_PORT" --max-requests-per-bin 1000 "${STORE[@]}" &
  PIDS+=($!)
  wait_port "$CAPTURE_PORT"
fi
RUST_LOG=warn "${CPU0[@]}" "$SERVER" serve --port "$PORT" --max-requests-per-bin 1000 "${STORE[@]}" &
PIDS+=($!)
wait_port "$PORT"

timeout $(( SECONDS_ + 120 )) "${CPU1[@]}" "$BENCH" --server "127.0.0.1:$PORT" \
  --capture-server "127.0.0.1:$CAPTURE_PORT" --subscribers "$SUBSCRIBERS" --rate "$RATE" --seconds "$SECONDS_"
