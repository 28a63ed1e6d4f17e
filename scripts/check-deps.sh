#!/usr/bin/env bash
# Fails when a workspace crate's Cargo.toml declares a dependency its sources never use
# (the check `cargo machete` makes, without downloading it). For every dependency of
# [dependencies], [dev-dependencies], [build-dependencies] (also per target), the name the code
# uses (the key, `-` as `_`) must appear as a path in that crate's src/, tests/, benches/,
# examples/ or build.rs: `name::`, `use name`, `extern crate name`.
#
# A dependency used only through features or macros that never name it is listed in IGNORED
# below with the reason; keep that list short and explained.
#
# Usage: scripts/check-deps.sh [CRATE_DIR...]   (default: every workspace member)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# "crate-dir:dependency" pairs that are used without being named in the sources.
IGNORED=(
  # None today. Example: "bin-server:foo"  # enabled only for its feature `bar` of crate baz.
)

# The workspace members, from the root manifest's `members = [...]`.
members() {
  sed -n 's/^members *= *\[\(.*\)\]/\1/p' Cargo.toml | tr -d '" ' | tr ',' '\n' | sed '/^$/d'
}

# The dependency keys of one manifest, one a line.
dependencies() {
  awk '
    /^\[/ {
      in_deps = ($0 ~ /^\[(target\..*\.)?(dev-|build-)?dependencies\]$/)
      if (match($0, /^\[(target\..*\.)?(dev-|build-)?dependencies\.[A-Za-z0-9_-]+\]$/)) {
        name = $0
        sub(/^.*dependencies\./, "", name)
        sub(/\]$/, "", name)
        print name
      }
      next
    }
    in_deps && /^[A-Za-z0-9_-]+(\.workspace)? *=/ {
      name = $0
      sub(/[ .=].*$/, "", name)
      print name
    }
  ' "$1" | sort -u
}

ignored() {
  local pair
  for pair in "${IGNORED[@]+"${IGNORED[@]}"}"; do
    [[ "$pair" == "$1" ]] && return 0
  done
  return 1
}

if (($#)); then
  crates=("$@")
else
  mapfile -t crates < <(members)
fi

unused=0
for crate in "${crates[@]}"; do
  manifest="$crate/Cargo.toml"
  [[ -f "$manifest" ]] || { echo "check-deps: no $manifest" >&2; exit 2; }
  sources=()
  for d in src tests benches examples build.rs; do
    [[ -e "$crate/$d" ]] && sources+=("$crate/$d")
  done
  while read -r dep; do
    [[ -n "$dep" ]] || continue
    ignored "$crate:$dep" && continue
    ident="${dep//-/_}"
    pattern="(^|[^A-Za-z0-9_:])${ident}::|\\buse +${ident}\\b|\\bextern +crate +${ident}\\b"
    if ((${#sources[@]} == 0)) ||
      ! grep -rqE --include='*.rs' "$pattern" "${sources[@]}"; then
      echo "check-deps: $manifest declares \`$dep\`, but no source of $crate uses \`$ident\`" >&2
      unused=$((unused + 1))
    fi
  done < <(dependencies "$manifest")
done

if ((unused)); then
  echo "check-deps: $unused unused dependenc$( ((unused == 1)) && echo y || echo ies);" \
    "remove them, or list them in IGNORED in $0 with the reason" >&2
  exit 1
fi
echo "check-deps: every declared dependency is used (${crates[*]})"
