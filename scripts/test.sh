#!/usr/bin/env bash
# Runs Hookbin's whole test suite: unit, API, CLI and end-to-end tests (cargo), the doctests of
# the test helper, and the real-browser tests. Installs what they need first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Cheap, so first: every dependency a crate declares is used by its sources.
scripts/check-deps.sh
scripts/setup.sh --test

# One build of the workspace (default members: all but the wasm-only frontend) serves every
# step below; the browser tests drive the bin-server binary it produces.
cargo build --workspace --exclude frontend --all-features --bins
cargo test --workspace --exclude frontend --all-features
# The UI's pure logic (body views, copy as cURL, sizes and times) is unit-tested on the host.
cargo test -p frontend

if [[ -f tests/browser/package.json ]]; then
  # One file at a time: each starts its own server and browser, and some measure timings.
  (cd tests/browser && npm test)
fi
