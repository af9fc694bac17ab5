#!/usr/bin/env bash
# Runs every benchmark and writes docs/benchmarks.md: each figure beside its baseline measured
# in the same run, with the command that produced it.
# Usage: scripts/bench.sh [section ...]   (default: all sections)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# Benchmarks build in release mode in their own target dir, so they never hold the lock
# of the debug builds that tests use.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/bench}"
out="docs/benchmarks.md"
tmp="$(mktemp)"

section() { # title, command...
  local title="$1"; shift
  echo "running: $*" >&2
  {
    echo "## $title"
    echo
    echo '```sh'
    echo "$*"
    echo '```'
    echo
    "$@" 2>/dev/null
    echo
  } >>"$tmp"
}

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d). Every figure stands beside"
  echo "a baseline measured in the same run on the same machine; compare ratios, not absolutes."
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "$(free -g | awk '/Mem:/{print $2}') GiB RAM, $(rustc --version), $(psql --version | head -1)."
  echo "Postgres, Redis and every server run on the same machine as the load generator."
  echo
} >"$tmp"

want() { [ $# -eq 0 ] && return 0; for s in "${SECTIONS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
SECTIONS=("$@")
all() { [ ${#SECTIONS[@]} -eq 0 ]; }

if all || want outbox; then
  section "Outbox: claim→complete on a no-op step vs pgbench writes" \
    cargo bench -q -p rvc-outbox --bench outbox -- 20000 10
fi
if all || want outbox-growth; then
  section "Outbox: claims as the table grows (done rows awaiting pruning, dead rows)" \
    cargo bench -q -p rvc-outbox --bench outbox -- growth 20000
fi
if all || want ingest; then
  section "Ingest: POST with two ~200 KB JPEGs vs a handler that writes nothing" \
    cargo bench -q -p rvc-ingest-api --bench ingest -- 400 8
fi
for extra in scripts/bench.d/*.sh; do
  [ -e "$extra" ] || continue
  name="$(basename "$extra" .sh)"
  if all || want "$name"; then
    # shellcheck disable=SC1090
    . "$extra"
  fi
done

mv "$tmp" "$out"
echo "wrote $out" >&2
