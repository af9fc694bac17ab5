#!/usr/bin/env bash
# Installs the S3-protocol test/dev server s3s-fs (crates.io) unless the pinned version is
# already there. Idempotent and quiet; prints one line when it installs.
# Tests find it via $S3S_FS_BIN, ~/.cargo/bin/s3s-fs, or PATH.
set -euo pipefail

VERSION="0.14.1" # 0.17 needs rustc 1.96; keep in step with rvc-test-support/src/s3.rs

bin="${S3S_FS_BIN:-}"
if [[ -z "$bin" ]]; then
  bin="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
  [[ -x "$bin" ]] || bin="$(command -v s3s-fs 2>/dev/null || true)"
fi

if [[ -n "$bin" && -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qw "$VERSION"; then
  exit 0
fi

echo "setup-s3: installing s3s-fs $VERSION (cargo install, about 2 minutes)" >&2
log="$(mktemp -t setup-s3.XXXXXX.log)"
if ! cargo install --locked --quiet s3s-fs --version "$VERSION" --features binary >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
