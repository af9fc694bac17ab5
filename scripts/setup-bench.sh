#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make setup`: graphile-worker (npm), the job queue
# the outbox is compared with (crates/rvc-outbox/benches/outbox.rs), pinned by
# scripts/bench/graphile-worker/package-lock.json into var/bench/graphile-worker.
# Idempotent and quiet: checked by the file it provides.
#   var/bench/graphile-worker/node_modules/graphile-worker/package.json
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dir="var/bench/graphile-worker"
src="scripts/bench/graphile-worker"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# node itself is in scripts/needs.txt (`make setup`); npm only installs the peer, so only here.
if [[ ! -x /usr/bin/npm ]]; then
  echo "setup-bench: installing Debian package npm" >&2
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends npm; } >/dev/null
fi
if [[ ! -f "$dir/node_modules/graphile-worker/package.json" ]] \
  || ! cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
  echo "setup-bench: installing graphile-worker into $dir (npm ci)" >&2
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --silent --no-audit --no-fund)
fi
