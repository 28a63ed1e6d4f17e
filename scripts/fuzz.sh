#!/usr/bin/env bash
# Fuzzes the connection tap (bin-server/fuzz, target `tap`) for a while; fails on a crash.
#
#   scripts/fuzz.sh            # 30 s
#   scripts/fuzz.sh 600        # 10 minutes
#   scripts/fuzz.sh 30 -jobs=2 # more libFuzzer flags after the seconds
#
# cargo fuzz wants nightly flags; the pinned stable toolchain takes them with RUSTC_BOOTSTRAP=1
# (no nightly is installed). A dev build (debug assertions, overflow checks): a clean build
# takes minutes, the fuzzing itself is the short part. No sanitizer: the workspace forbids
# unsafe code, and the checks that matter are the target's own assertions. Installs cargo-fuzz
# when missing.
# A crash leaves its input in bin-server/fuzz/artifacts/tap/; replay it with
#   RUSTC_BOOTSTRAP=1 HOOKBIN_SKIP_UI=1 cargo fuzz run --dev --fuzz-dir bin-server/fuzz --sanitizer none tap <file>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-30}
shift || true

if ! cargo fuzz --version > /dev/null 2>&1; then
    cargo install --locked cargo-fuzz || cargo install cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1 HOOKBIN_SKIP_UI=1
# The fuzz crate is its own workspace: start its lock file from the root's, so it builds the
# same dependency versions the server ships with.
[ -f bin-server/fuzz/Cargo.lock ] || cp Cargo.lock bin-server/fuzz/Cargo.lock
# Keep the corpus between runs (it is not committed: bin-server/fuzz/.gitignore).
mkdir -p bin-server/fuzz/corpus/tap
# New inputs go to corpus/tap; seeds/tap (committed) and tap.dict start it off with HTTP/1 shapes.
cargo fuzz run --dev --fuzz-dir bin-server/fuzz --sanitizer none tap \
    bin-server/fuzz/corpus/tap bin-server/fuzz/seeds/tap -- \
    -dict=bin-server/fuzz/tap.dict -max_total_time="$seconds" -max_len=4096 -timeout=10 "$@"
