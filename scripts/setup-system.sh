#!/usr/bin/env bash
# Installs what the project needs from Debian's packages and crates.io, quietly and only
# when missing, then makes sure PostgreSQL and Redis run on loopback.
# Idempotent: a second run changes nothing and prints nothing.
set -euo pipefail

log() { echo "setup: $*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; else
    echo "setup: no Rust toolchain found (cargo). Install rustup (https://rustup.rs) first." >&2
    exit 1
  fi
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=needs.sh
. "$repo/scripts/needs.sh"

# Debian packages and cargo tools listed in scripts/needs.txt whose file is missing.
apt_need=()
cargo_need=()
while IFS=$'\t' read -r files provider; do
  need_present "$files" && continue
  case "$provider" in
    apt:*) apt_need+=("${provider#apt:}") ;;
    cargo:*) cargo_need+=("${provider#cargo:}") ;;
  esac
done < <(needs_entries)
if [ ${#apt_need[@]} -gt 0 ]; then
  log "installing Debian packages: ${apt_need[*]}"
  apt_log="$(mktemp -t setup-apt.XXXXXX.log)"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends "${apt_need[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi
for crate in "${cargo_need[@]}"; do
  log "installing $crate (cargo install)"
  cargo install --locked --quiet "$crate"
done

# PostgreSQL on 127.0.0.1:5432 with trust auth for local development and tests.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$ver" ]; then echo "setup: PostgreSQL is installed but has no cluster" >&2; exit 1; fi
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q '^# rvc: trust loopback' "$hba"; then
    log "allowing trust auth on loopback for local development ($hba)"
    $SUDO sed -i '1i # rvc: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  log "starting PostgreSQL $ver"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || $SUDO pg_ctlcluster "$ver" main start
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

# Redis on 127.0.0.1:6379 (nothing persisted).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /tmp/rvc-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/rvc-redis --logfile /tmp/rvc-redis/redis.log >/dev/null
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
