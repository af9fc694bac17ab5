#!/usr/bin/env bash
# Starts the whole system on loopback with the embedded defaults, logs under var/log/.
# Ctrl-C (or SIGTERM) stops every process gracefully.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
[ -f .env ] && set -a && . ./.env && set +a

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rvc}"
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
export RUST_LOG="${RUST_LOG:-info}"
bin="$repo/target/debug"
mkdir -p var/log

db_name="${DATABASE_URL##*/}"; db_name="${db_name%%\?*}"
admin_url="${DATABASE_URL%/*}/postgres"
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE \"$db_name\""
fi
"$bin/rvcctl" migrate

pids=()
start() { # name, then the command
  local name="$1"; shift
  "$@" >"var/log/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name (pid $!, log var/log/$name.log)"
}
stop() {
  trap - INT TERM
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  echo "stopped"
}
trap stop INT TERM

start rvc-ingest-api "$bin/rvc-ingest-api"

echo
echo "API:        http://$HTTP_ADDR/api/v1/products"
echo "Swagger UI: http://$HTTP_ADDR/swagger/index.html"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
stop
