#!/usr/bin/env bash
# Guard run by `make test` after setup: what the build and the tests need must be installed by
# the project's own scripts, so that a fresh machine works as this one does.
#  1. every file listed in scripts/needs.txt exists (the setup scripts installed it);
#  2. every external program the code or the scripts run is listed there: Rust
#     `Command::new("prog")`, and `.venv/bin/prog` / `$cargo_bin/prog` / `~/.cargo/bin/prog` in
#     the Makefile and scripts/. A program that this machine happens to have but no setup
#     script installs fails here with its name, instead of failing later on a new machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=needs.sh
. "$repo/scripts/needs.sh"
cd "$repo"

fail=0
listed=()
while IFS=$'\t' read -r files provider; do
  if ! need_present "$files"; then
    echo "check-setup: missing ${files} (provided by ${provider}); run \`make setup\`" >&2
    fail=1
  fi
  IFS='|' read -r -a alts <<<"$files"
  for alt in "${alts[@]}"; do listed+=("$(basename "$alt")"); done
done < <(needs_entries)

is_listed() {
  local name
  for name in "${listed[@]}"; do [[ "$name" == "$1" ]] && return 0; done
  return 1
}

# Programs the code runs, with where each is run from.
used=$(
  {
    grep -rhoE 'Command::new\("[^"/]+"\)' crates --include='*.rs' | sed -E 's/.*\("([^"]+)"\).*/\1/'
    grep -hoE '(\.venv/bin/|\$cargo_bin/|~/\.cargo/bin/|\$\{?CARGO_HOME[^/]*/bin/)[A-Za-z0-9_.-]+' \
      Makefile $(ls scripts/*.sh | grep -v check-setup.sh) | sed -E 's#.*/##; s#[.]+$##'
  } | sort -u
)
for prog in $used; do
  case "$prog" in
    cargo|rustc|rustfmt|cargo-clippy) continue ;; # the Rust toolchain itself (rustup)
  esac
  if ! is_listed "$prog"; then
    echo "check-setup: the code runs \`$prog\` but scripts/needs.txt does not list it;" \
      "add it with the setup step that installs it" >&2
    fail=1
  fi
done

if [ "$fail" -ne 0 ]; then
  echo "check-setup: FAILED (see scripts/needs.txt)" >&2
  exit 1
fi
