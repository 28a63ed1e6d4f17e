#!/usr/bin/env bash
# Builds and runs bin-server with the UI (release). Extra arguments go to bin-server, e.g.
#   scripts/serve.sh --port 9000 --auto-create
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo run --release -p bin-server -- "$@"
