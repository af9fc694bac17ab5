#!/usr/bin/env bash
# Installs the Kafka-protocol broker used by tests and local runs: tansu 0.6.0 from crates.io,
# with the `dynostore` feature (in-memory storage engine `memory://`). Idempotent and quiet:
# does nothing when $TANSU_BIN is set to an executable, or when ~/.cargo/bin/tansu is 0.6.0
# installed with that feature.
# The first install compiles for about 12 minutes on 2 cores.
set -euo pipefail

VERSION=0.6.0
FEATURES=dynostore
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
BIN="$CARGO_BIN/tansu"

# True when cargo's install record shows tansu $VERSION built with the $FEATURES feature
# (a tansu without it starts, but cannot open the memory:// storage engine).
installed_with_features() {
    local record="${CARGO_HOME:-$HOME/.cargo}/.crates2.json"
    [ -f "$record" ] || return 1
    grep -o "\"tansu $VERSION ([^\"]*)\":{[^}]*}" "$record" | grep -q "\"$FEATURES\""
}

if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then
    exit 0
fi
if [ -x "$BIN" ] && installed_with_features; then
    exit 0
fi

echo "setup-kafka: installing tansu $VERSION (features: $FEATURES); this takes ~12 minutes" >&2
log="$(mktemp -t setup-kafka.XXXXXX.log)"
if ! cargo install --locked tansu --version "$VERSION" --features "$FEATURES" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup-kafka: cargo install tansu failed (full log: $log)" >&2
    exit 1
fi
rm -f "$log"
echo "setup-kafka: installed $("$CARGO_BIN/tansu" --version 2>/dev/null || echo "$CARGO_BIN/tansu")" >&2
