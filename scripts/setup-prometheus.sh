#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's `prometheus` package when either file is
# missing (`make run` starts Prometheus on loopback; `make test` runs `promtool test rules`).
# Idempotent and quiet: a second run changes nothing and prints nothing.
set -euo pipefail
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing Debian package prometheus (prometheus, promtool)"
# apt's output is shown only when it fails
out=$($SUDO apt-get update -qq 2>&1) || { echo "$out" >&2; exit 1; }
out=$(DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus 2>&1) \
  || { echo "$out" >&2; exit 1; }
for f in /usr/bin/prometheus /usr/bin/promtool; do
  [ -x "$f" ] || { echo "setup: $f still missing after installing prometheus" >&2; exit 1; }
done
