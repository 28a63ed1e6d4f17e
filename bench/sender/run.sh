#!/usr/bin/env bash
# Sender delivery throughput: signed deliveries per second from the engine to a local receiver
# (100 webhooks, 1 KiB payloads), then the same with one black-holed webhook added.
#
#   bench/sender/run.sh [ROUNDS] [TRIALS]     # default 300 rounds (30,000 deliveries), 3 trials
#   STORE=sqlite bench/sender/run.sh ...       # the sender's SQLite store instead of memory
#   STORE=redis bench/sender/run.sh ...        # on Redis (a redis-server of its own, port 3952)
#   BENCH=/tmp/bench-before bench/sender/run.sh # a prebuilt sender/examples/bench (no build)
#
# The receiver (answers 200; a second port accepts and never answers) runs pinned to CPU 1, the
# sender to CPU 0, each with one tokio worker: sender/examples/bench.rs. Everything is on
# 127.0.0.1 and every run is bounded (the sender gives up after 120 s).
# Targets: >= 10,000 deliveries/s; the black hole costs the healthy webhooks < 10 %.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS="${1:-300}"
TRIALS="${2:-3}"
PORT=3950
HOLE_PORT=3951

# BENCH=PATH runs a bench binary built elsewhere (another commit, for a before/after).
if [ -z "${BENCH:-}" ]; then
  echo "== building (release)" >&2
  # The example needs no web UI (bin-server is only a dev-dependency): skip its wasm build.
  HOOKBIN_SKIP_UI=1 cargo build --release -q -p hookbin-sender --example bench \
    --manifest-path "$ROOT/Cargo.toml"
  BENCH="$ROOT/target/release/examples/bench"
fi
# Pinned with taskset where it exists (it execs, so $! is the receiver itself).
CPU0=(); CPU1=()
if command -v taskset >/dev/null; then CPU0=(taskset -c 0); CPU1=(taskset -c 1); fi

"${CPU1[@]}" "$BENCH" receive --port "$PORT" --hole-port "$HOLE_PORT" &
RECEIVER=$!
trap 'kill "$RECEIVER" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do
  (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# STORE=sqlite runs the sender on its SQLite store (a fresh temporary file each run).
EXTRA=()
if [ "${STORE:-memory}" = sqlite ]; then
  DB="$(mktemp -d)/bench.sender.db"; EXTRA=(--sqlite "$DB")
elif [ "${STORE:-memory}" = redis ]; then
  # STORE=redis: a redis-server of its own (no persistence) on CPU 1 with the receiver.
  REDIS_PORT=3952
  "${CPU1[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >/dev/null &
  REDIS=$!
  trap 'kill "$RECEIVER" "$REDIS" 2>/dev/null || true' EXIT INT TERM
  for _ in $(seq 50); do
    (echo >"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
  done
  EXTRA=(--redis "redis://127.0.0.1:$REDIS_PORT/")
fi
run() { timeout 180 "${CPU0[@]}" "$BENCH" send --url "http://127.0.0.1:$PORT" --webhooks 100 --rounds "$ROUNDS" "${EXTRA[@]}" "$@"; }
rate() { sed -n 's/.*per_second=\([0-9]*\).*/\1/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

healthy=(); holed=()
for t in $(seq "$TRIALS"); do
  out=$(run); echo "trial $t healthy:    $out" >&2; healthy+=("$(rate <<<"$out")")
  out=$(run --hole "http://127.0.0.1:$HOLE_PORT"); echo "trial $t black hole: $out" >&2
  holed+=("$(rate <<<"$out")")
done
h=$(printf '%s\n' "${healthy[@]}" | median)
b=$(printf '%s\n' "${holed[@]}" | median)
cost=$(awk -v h="$h" -v b="$b" 'BEGIN {printf "%.1f", (h - b) * 100 / h}')
echo "median deliveries/s: healthy only $h, with a black hole $b (cost ${cost} %)"
