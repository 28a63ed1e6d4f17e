#!/usr/bin/env bash
# Capture throughput and memory of bin-server against the shared harness' bare axum baseline.
#
#   bench/capture.sh            # both: throughput ratio, then memory per stored request
#   bench/capture.sh rps        # only the throughput comparison
#   bench/capture.sh mem        # only the memory figures
#   bench/capture.sh stores     # the three stores side by side: baseline, memory, sqlite, redis
#   REDIS_CPUS=1 bench/capture.sh stores   # the same with redis-server on wrk's core
#
# Throughput: ../shared/bench/compare.sh, ABBA-alternating, baseline `POST /ok` (reads the body,
# answers 200) vs a bin-server capture URL (bin created first, default per-bin cap), each server
# pinned to CPU 0 and wrk to CPU 1. Prints the capture/baseline ratio (target >= 0.85).
# Memory: RSS growth per stored 1 KiB request (target <= 1,536 bytes), measured twice:
#   1. with the harness' mem.sh: 100,000 requests into one bin (cap raised to hold them all);
#   2. 100,000 requests spread over 100 bins (1,000 each, the default cap) by bench/spread.lua,
#      with RSS read the same way mem.sh does.
# Stores: ../shared/bench/run-many.sh round-robin over the baseline and three bin-servers, one per
# `--store` (memory; sqlite:FILE in the run dir, fresh; redis:// on a redis-server of its own on
# port 3910, started with --save '' --appendonly no), all pinned to CPU 0 with their store (the
# Redis server too), wrk on CPU 1; ratios against the memory store (targets: SQLite and Redis
# >= 0.5) and the baseline. Then the storage cost per stored 1 KiB request: 20,000 captures into
# a bin that holds them all, Redis `used_memory` growth and the SQLite file (+ WAL) growth per
# request.
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

cleanup() {
  for n in baseline hookbin hb-memory hb-sqlite hb-redis redis; do "$HARNESS/stop.sh" "$n"; done
}
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

if [[ "$WHAT" == stores ]]; then
  command -v redis-server >/dev/null || { echo "capture.sh: needs redis-server (apt-get install redis-server)" >&2; exit 2; }
  REDIS_PORT=3910
  db="$RUN_DIR/bench.db"; rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
  echo "== stores: baseline, memory, sqlite, redis (run-many.sh)" >&2
  BIND="127.0.0.1:$BASE_PORT" "$HARNESS/serve.sh" baseline "127.0.0.1:$BASE_PORT" -- "$BASELINE" >/dev/null
  # REDIS_CPUS: where redis-server runs (default: CPU 0, with the servers, so that every store's
  # whole cost lands on one core; REDIS_CPUS=1 puts it beside wrk, as a Redis of its own would be).
  SERVER_CPUS="${REDIS_CPUS:-0}" "$HARNESS/serve.sh" redis "127.0.0.1:$REDIS_PORT" -- redis-server --port "$REDIS_PORT" \
    --bind 127.0.0.1 --save '' --appendonly no >/dev/null
  declare -A port=([memory]=3902 [sqlite]=3903 [redis]=3904)
  declare -A store=([memory]=memory [sqlite]="sqlite:$db" [redis]="redis://127.0.0.1:$REDIS_PORT")
  targets="$RUN_DIR/stores.targets"
  echo "baseline http://127.0.0.1:$BASE_PORT/ok $RUN_DIR/baseline.pid" > "$targets"
  for s in memory sqlite redis; do
    RUST_LOG=warn "$HARNESS/serve.sh" "hb-$s" "127.0.0.1:${port[$s]}" -- \
      "$HOOKBIN" --port "${port[$s]}" --store "${store[$s]}" --max-requests-per-bin 20000 >/dev/null
    # The default per-bin cap (1,000) for the load; the server's is raised for the size run.
    curl -sf -X PUT "http://127.0.0.1:${port[$s]}/api/bins/bench" -H 'Content-Type: application/json' \
      -d '{"limits":{"max_requests":1000}}' >/dev/null
    echo "$s http://127.0.0.1:${port[$s]}/b/bench $RUN_DIR/hb-$s.pid" >> "$targets"
  done
  "$HARNESS/run-many.sh" "$targets" memory | tee "$RUN_DIR/stores.out"

  echo "== storage per stored 1 KiB request: 20,000 captures into one bin per store" >&2
  redis_used() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/{print $2+0}'; }
  sqlite_bytes() { { cat "$db" "$db-wal" 2>/dev/null || true; } | wc -c; }
  for s in sqlite redis; do
    curl -sf -X PUT "http://127.0.0.1:${port[$s]}/api/bins/size" -H 'Content-Type: application/json' -d '{}' >/dev/null
  done
  r0=$(redis_used); f0=$(sqlite_bytes)
  for s in sqlite redis; do
    # mem.sh reads the stored count from COUNT_CMD (an empty answer breaks it): the bin's own.
    MEM_CONC=16 COUNT_CMD="curl -s http://127.0.0.1:${port[$s]}/api/bins/size | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"request_count\"])'" \
      "$HARNESS/mem.sh" "http://127.0.0.1:${port[$s]}/b/size" \
      "$(cat "$RUN_DIR/hb-$s.pid")" 20000 > "$RUN_DIR/size-$s.out"
  done
  r1=$(redis_used); f1=$(sqlite_bytes)
  n_sqlite=$(curl -s "http://127.0.0.1:${port[sqlite]}/api/bins/size" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_count"])')
  n_redis=$(curl -s "http://127.0.0.1:${port[redis]}/api/bins/size" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_count"])')
  python3 - "$r0" "$r1" "$n_redis" "$f0" "$f1" "$n_sqlite" <<'PY'
import json, sys
r0, r1, nr, f0, f1, ns = map(int, sys.argv[1:7])
print(json.dumps({"redis_stored": nr, "redis_used_memory_bytes_per_request": round((r1 - r0) / nr, 1) if nr else None,
                  "sqlite_stored": ns, "sqlite_file_bytes_per_request": round((f1 - f0) / ns, 1) if ns else None},
                 separators=(",", ":")))
PY
fi
