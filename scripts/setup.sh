#!/usr/bin/env bash
# Installs what building and testing Hookbin needs on a fresh Debian machine with rustup.
# Idempotent: each step checks first. Usage: scripts/setup.sh [--test]
#   (no flag)  the wasm32 target for the UI
#   --test     also Debian's chromium, curl and redis-server (browser, CLI and storage tests),
#              Node.js with npm when missing, the browser tests' npm packages (playwright-core
#              drives chromium), and schemathesis from PyPI (the OpenAPI fuzz)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

# rust-toolchain.toml lists the target, but RUSTUP_AUTO_INSTALL=0 machines do not add it.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [[ "${1:-}" == "--test" ]]; then
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "apt-get install ${need[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      say "missing: ${need[*]} (install them with your package manager; browser tests need them)"
    fi
  fi
  # schemathesis fuzzes the API against its OpenAPI document (scripts/openapi-fuzz.sh).
  if ! command -v st >/dev/null 2>&1; then
    say "python3 -m pip install schemathesis"
    python3 -m pip install -q --disable-pip-version-check "schemathesis==4.32.5"
  fi
  if [[ -f tests/browser/package.json ]]; then
    if [[ ! -d tests/browser/node_modules ]] || [[ tests/browser/package-lock.json -nt tests/browser/node_modules ]]; then
      say "npm ci (tests/browser)"
      (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
fi
