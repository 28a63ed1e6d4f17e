#!/usr/bin/env bash
# What one capture costs the server, in counts that a busy machine does not distort: for a store,
# 1 KiB JSON POSTs at 64 connections (wrk on CPU 1, the server pinned to CPU 0) into a bin at its
# cap of 1,000 (3,000 captures first, so that every counted capture also evicts one):
#
#   bench/capture-cost.sh [STORE] [N]    # STORE: memory (default) or sqlite; N: 10000
#
# 1. instructions per capture, whole process (valgrind --tool=callgrind, counters zeroed after the
#    warm-up, dumped after N more captures);
# 2. per capture, from `perf stat` on the server while 3*N more captures run without valgrind:
#    CPU time, context switches and the system calls that matter for a store (fsync, pwrite,
#    pread, futex, epoll_wait). CPU time moves with other load; the counts barely do.
# Compare two builds by running each (ABAB); only the same N and STORE compare.
# Needs valgrind, perf, wrk, taskset; everything targets 127.0.0.1 and every run is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="${HOOKBIN_BENCH_HARNESS:-$ROOT/../shared/bench}"
[[ -f "$HARNESS/count.lua" ]] || { echo "capture-cost.sh: harness not found at $HARNESS" >&2; exit 2; }
for t in valgrind callgrind_control perf wrk taskset; do
  command -v "$t" >/dev/null || { echo "capture-cost.sh: needs $t" >&2; exit 2; }
done
STORE="${1:-memory}"; N="${2:-10000}"; PORT="${PORT:-3950}"
[[ "$STORE" == memory || "$STORE" == sqlite ]] || { echo "capture-cost.sh: STORE is memory or sqlite" >&2; exit 2; }
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1000 && "$N" -le 200000 ]] || { echo "capture-cost.sh: N in 1000..200000" >&2; exit 2; }
HOOKBIN="${HOOKBIN:-$ROOT/target/release/bin-server}"
if [[ -z "${HOOKBIN_NO_BUILD:-}" ]]; then
  cargo build --release -q -p bin-server --manifest-path "$ROOT/Cargo.toml"
fi
RUN="$(mktemp -d "${TMPDIR:-/tmp}/hookbin-cost.XXXXXX")"
URL="http://127.0.0.1:$PORT"
server=""
cleanup() { [[ -n "$server" ]] && kill -TERM "$server" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

start() { # start CMD...: the server (under CMD) on CPU 0, a bin at its cap of 1,000
  local store=memory
  [[ "$STORE" == sqlite ]] && { rm -f "$RUN"/b.db*; store="sqlite:$RUN/b.db"; }
  setsid taskset -c 0 "$@" "$HOOKBIN" --port "$PORT" --store "$store" > "$RUN/server.log" 2>&1 < /dev/null &
  server=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  curl -sf -X PUT "$URL/api/bins/cost" -H 'Content-Type: application/json' \
    -d '{"limits":{"max_requests":1000}}' > /dev/null
}
captured() { curl -s "$URL/api/bins/cost" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_captured"])'; }
load() { # load UNTIL: 64 connections until the bin has captured UNTIL in all (wrk stops
  # itself after that many answers; at most 600 s)
  BODY_FILE="$HARNESS/body-1k.json" LIMIT_PER_THREAD=$(($1 - $(captured))) timeout -k 5 600 taskset -c 1 wrk -t1 -c64 -d590s --timeout 30s \
    -s "$HARNESS/count.lua" "$URL/b/cost" > "$RUN/wrk.out" 2>&1 &
  local w=$!
  while kill -0 "$w" 2>/dev/null; do
    [[ "$(captured)" -ge "$1" ]] && { kill -INT "$w" 2>/dev/null; break; }
    sleep 0.2
  done
  wait "$w" 2>/dev/null || true
}
stop() { kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=""; }

echo "== $STORE: callgrind, $N captures" >&2
start valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out"
vg=$server
load 3000
callgrind_control -z "$vg" > /dev/null
c0=$(captured); load $((c0 + N)); c1=$(captured)
callgrind_control -d "$vg" > /dev/null
stop
ir=$(awk '/^summary:/{print $2}' "$RUN/cg.out.1")

echo "== $STORE: perf stat, $((3 * N)) captures" >&2
start
load 3000
events=task-clock,context-switches
for s in fsync fdatasync pwrite64 pread64 futex epoll_wait; do events="$events,syscalls:sys_enter_$s"; done
perf stat -x, -o "$RUN/perf.out" -p "$server" -e "$events" &
pp=$!
sleep 0.5
p0=$(captured); load $((p0 + 3 * N)); p1=$(captured)
kill -INT "$pp"; wait "$pp" 2>/dev/null || true
stop
python3 - "$STORE" "$((c1 - c0))" "$ir" "$((p1 - p0))" "$RUN/perf.out" <<'PY'
import json, sys
store, n, ir, pn, perf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
out = {"store": store, "captures": n, "instructions_per_capture": round(ir / n), "perf_captures": pn}
for line in open(perf):
    p = line.strip().split(",")
    if len(p) < 3 or not p[0].replace(".", "").isdigit():
        continue
    name = p[2].replace("syscalls:sys_enter_", "")
    v = float(p[0])
    out["cpu_us" if name == "task-clock" else name] = round(v * 1000 / pn, 2) if name == "task-clock" else round(v / pn, 3)
print(json.dumps(out, separators=(",", ":")))
PY
