#!/usr/bin/env bash
# SSE fan-out: N subscribers on one bin's live stream while captures arrive at a fixed rate;
# reports captures/s achieved and capture-to-SSE latency p50/p99 seen by the subscribers.
#
#   bench/sse.sh [SUBSCRIBERS] [RATE] [SECONDS]      # default 1000 subscribers, 2000/s, 10 s
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

RUST_LOG=warn "${CPU0[@]}" "$SERVER" serve --port "$PORT" --max-requests-per-bin 1000 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

timeout $(( SECONDS_ + 120 )) "${CPU1[@]}" "$BENCH" --server "127.0.0.1:$PORT" \
  --subscribers "$SUBSCRIBERS" --rate "$RATE" --seconds "$SECONDS_"
