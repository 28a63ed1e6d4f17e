#!/usr/bin/env bash
# Fuzzes a running bin-server against its own OpenAPI document with schemathesis: every JSON
# route, generated and mutated inputs, checked for no 5xx, documented status codes, and
# responses that match their schemas. Bounded: --max-examples per operation, a request timeout,
# and the whole run under `timeout`.
#
#   scripts/openapi-fuzz.sh [EXAMPLES]      # default 25 examples per operation
#   HOOKBIN_BIN=target/debug/bin-server scripts/openapi-fuzz.sh 100   # an existing build
#
# Starts its own server (memory store, a free port on loopback, outbound requests only to public
# addresses, which this sandbox cannot reach) with one bin of three requests to find, a webhook
# delivering to that bin, and one message it was sent.
# Live streams (`/stream`, `/smee`) and the long poll (`/wait`) never end by design, so they
# are left out of the fuzzing (the e2e tests cover them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EXAMPLES="${1:-25}"
command -v st >/dev/null || { echo "openapi-fuzz.sh: needs schemathesis (python3 -m pip install schemathesis)" >&2; exit 2; }
# HOOKBIN_BIN: a bin-server binary built already (CI passes the one scripts/test.sh built, so
# nothing is compiled twice); else a debug build without the UI.
server="${HOOKBIN_BIN:-}"
if [[ -z "$server" ]]; then
  HOOKBIN_SKIP_UI=1 cargo build -q -p bin-server
  server=target/debug/bin-server
fi
log="$(mktemp)"
RUST_LOG=warn,bin_server=info "$server" serve --port 0 --outbound-policy public-only >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
base=""
for _ in $(seq 100); do
  base="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 || true)"
  [[ -n "$base" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$base" ]] || { echo "openapi-fuzz.sh: the server did not say where it listens" >&2; exit 1; }
# Something to find: the documents' examples name bin `fuzz` and request 1.
curl -sf -X PUT "$base/api/bins/fuzz" -H 'Content-Type: application/json' -d '{}' >/dev/null
for body in '{"type":"payment_received","amount":10}' 'not json' ''; do
  curl -sf -X POST "$base/b/fuzz/hook?x=1" -H 'Content-Type: application/json' -d "$body" >/dev/null
done
# A webhook the examples name (`fuzz-hook`), subscribed to every event and delivering to bin
# `fuzz` on this same server. `--outbound-policy public-only` refuses loopback addresses, so a
# webhook to some other local port would fail every delivery; this server's own bins are the
# exception the policy always allows (sent straight to its bound address), so these deliveries
# land and the log, the messages and resend have real data. URLs the fuzzer makes up are held to
# public addresses, which this sandbox cannot reach: nothing else on the host is touched.
events="$(curl -sf "$base/api/events" | python3 -c 'import json,sys; print(json.dumps([e["slug"] for e in json.load(sys.stdin)["events"]]))')"
curl -sf -X POST "$base/api/webhooks" -H 'Content-Type: application/json' \
  -d "{\"name\":\"fuzz-hook\",\"url\":\"$base/b/fuzz/delivered\",\"events\":$events}" >/dev/null
# One message for the message routes (`/api/deliveries/{id}`, resend): its id is random, so the
# run's config names it for those operations (the document's example cannot know it).
message="$(curl -sf -X POST "$base/api/events/payment_received/emit" -H 'Content-Type: application/json' -d '{}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["message_ids"][0])')"
config="$(mktemp --suffix=.toml)"
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log" "$config"' EXIT
cat >"$config" <<TOML
[[operations]]
include-path-regex = '^/api/deliveries/\{id\}'
parameters = { "path.id" = "$message" }

[[operations]]
include-path-regex = '^/api/webhooks/\{id\}/messages/'
parameters = { "path.msg" = "$message" }
TOML
timeout -k 5 600 st --config-file "$config" run "$base/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path-regex '(/stream|/smee|/wait)$' \
  --max-examples "$EXAMPLES" --request-timeout 35 --seed 1 --no-color
