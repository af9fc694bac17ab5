#!/usr/bin/env bash
# `make fuzz-api`: schemathesis (PyPI) against the ingest API's OpenAPI document, once with a
# valid key (every scope) and once without any: no 5xx, every status code, content type, header
# and body as documented. Bounded (FUZZ_EXAMPLES per operation, default 30) so it fits in CI.
# Starts its own API on a free loopback port against a fresh database, and removes both.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup-schemathesis.sh
bin="$repo/target/debug"
examples="${FUZZ_EXAMPLES:-30}"
admin_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="rvc_fuzz_$$"
export DATABASE_URL="${admin_url%/*}/$db"
mkdir -p var/log
log="var/log/fuzz-api.log"
api_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill -TERM "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$admin_url" -qc "CREATE DATABASE \"$db\""
"$bin/rvcctl" migrate >/dev/null
key="$("$bin/rvcctl" apikey create --name fuzz --scope admin --output json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# no rate limits: the fuzzer sends bursts on purpose
HTTP_ADDR="127.0.0.1:$port" AUTH_MODE=enforce RATE_LIMIT_CATALOG_WRITE=0 RATE_LIMIT_CATALOG_READ=0 \
  RATE_LIMIT_ADMIN=0 RUST_LOG=warn LOG_FORMAT=json REDIS_URL= \
  "$bin/rvc-ingest-api" >"$log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
schema="http://127.0.0.1:$port/api-docs/openapi.json"
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
run() { # label, then extra schemathesis arguments
  local label="$1"; shift
  echo "fuzz-api: $label"
  .venv/bin/schemathesis run "$schema" --checks "$checks" --max-examples "$examples" \
    --phases examples,coverage,fuzzing --generation-deterministic --request-timeout 10 \
    --no-color "$@"
}
run "with a valid key" -H "Authorization: Bearer $key"
run "without a key"
run "with an unknown key" -H "Authorization: Bearer rvc_aaaaaaaaaaaa_$(printf '0%.0s' $(seq 1 40))"
