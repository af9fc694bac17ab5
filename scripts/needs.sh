# Shared by setup-system.sh and check-setup.sh: reads scripts/needs.txt.
# needs_entries prints "FILE-ALTERNATIVES<TAB>PROVIDER" per entry; need_present tells whether
# any alternative (separated by |, globs and $CARGO_HOME expanded, relative to the repo) exists.
# shellcheck shell=bash
repo="${repo:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

needs_entries() {
  grep -vE '^\s*(#|$)' "$repo/scripts/needs.txt" | awk '{print $1 "\t" $2}'
}

need_present() { # alternatives
  local alt path
  IFS='|' read -r -a alts <<<"$1"
  for alt in "${alts[@]}"; do
    alt="${alt//\$CARGO_HOME/$CARGO_HOME}"
    [[ "$alt" = /* ]] || alt="$repo/$alt"
    for path in $alt; do
      [[ -e "$path" ]] && return 0
    done
  done
  return 1
}
