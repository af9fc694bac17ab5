#!/usr/bin/env bash
# `make fuzz-api`: schemathesis (PyPI) against the OpenAPI documents of the ingest API and of the
# read side (rvc-catalog), each with a valid key (every scope), without any key and with an
# unknown key: no 5xx, every status code, content type, header and body as documented. Bounded
# (FUZZ_EXAMPLES per operation, default 30) so it fits in CI.
# Starts its own rvc-ingest-api and rvc-catalog on free loopback ports against one fresh
# database, and removes them. rvc-catalog uses Redis at REDIS_URL (default 127.0.0.1:6379, with
# a key prefix of its own) when it answers, else runs without the cache. Its recognition
# backends (ML service, vector index) are deliberately unreachable ports: a request that passes
# validation gets the documented 503 problem+json, so POST /api/v1/recognize is checked without
# `not_a_server_error` but still with status_code_conformance (a 500 fails; 503 is documented).
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
catalog_log="var/log/fuzz-api-catalog.log"
api_pid=""
catalog_pid=""
cleanup() {
  [ -n "$catalog_pid" ] && kill -TERM "$catalog_pid" 2>/dev/null && wait "$catalog_pid" 2>/dev/null
  [ -n "$api_pid" ] && kill -TERM "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$admin_url" -qc "CREATE DATABASE \"$db\""
"$bin/rvcctl" migrate >/dev/null
key="$("$bin/rvcctl" apikey create --name fuzz --scope admin --output json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port name log
  for _ in $(seq 1 300); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fuzz-api: $2 did not start on port $1; see $3" >&2
  exit 1
}
port="$(free_port)"
# no rate limits: the fuzzer sends bursts on purpose
HTTP_ADDR="127.0.0.1:$port" AUTH_MODE=enforce RATE_LIMIT_CATALOG_WRITE=0 RATE_LIMIT_CATALOG_READ=0 \
  RATE_LIMIT_ADMIN=0 RUST_LOG=warn LOG_FORMAT=json REDIS_URL= \
  "$bin/rvc-ingest-api" >"$log" 2>&1 &
api_pid=$!
wait_port "$port" rvc-ingest-api "$log"

redis_url="${REDIS_URL-redis://127.0.0.1:6379}"
redis_hostport="${redis_url#redis://}"; redis_hostport="${redis_hostport%%/*}"
if [ -z "$redis_url" ] || ! (echo >"/dev/tcp/${redis_hostport%:*}/${redis_hostport##*:}") 2>/dev/null; then
  echo "fuzz-api: no Redis at ${redis_url:-(unset)}: rvc-catalog runs without the cache"
  redis_url=""
fi
cat_http="$(free_port)"; cat_grpc="$(free_port)"; dead_ml="$(free_port)"; dead_index="$(free_port)"
CATALOG_HTTP_ADDR="127.0.0.1:$cat_http" GRPC_ADDR="127.0.0.1:$cat_grpc" AUTH_MODE=enforce \
  RATE_LIMIT_CATALOG_READ=0 RATE_LIMIT_RECOGNIZE=0 RATE_LIMIT_ADMIN=0 \
  REDIS_URL="$redis_url" CACHE_KEY_PREFIX="rvc-fuzz-$$:" \
  ML_SERVICE_URL="http://127.0.0.1:$dead_ml" QDRANT_URL="http://127.0.0.1:$dead_index" \
  RECOGNITION_ML_TIMEOUT_MS=2000 RUST_LOG=warn LOG_FORMAT=json \
  "$bin/rvc-catalog" >"$catalog_log" 2>&1 &
catalog_pid=$!
wait_port "$cat_http" rvc-catalog "$catalog_log"

checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
run() { # label, schema URL, checks, then extra schemathesis arguments
  local label="$1" schema="$2" with_checks="$3"; shift 3
  echo "fuzz-api: $label"
  .venv/bin/schemathesis run "$schema" --checks "$with_checks" --max-examples "$examples" \
    --phases examples,coverage,fuzzing --generation-deterministic --request-timeout 10 \
    --no-color "$@"
}
unknown="rvc_aaaaaaaaaaaa_$(printf '0%.0s' $(seq 1 40))"
ingest="http://127.0.0.1:$port/api-docs/openapi.json"
run "ingest API with a valid key" "$ingest" "$checks" -H "Authorization: Bearer $key"
run "ingest API without a key" "$ingest" "$checks"
run "ingest API with an unknown key" "$ingest" "$checks" -H "Authorization: Bearer $unknown"

catalog="http://127.0.0.1:$cat_http/api-docs/openapi.json"
recognize_checks="${checks#not_a_server_error,}"
for auth in valid none unknown; do
  case "$auth" in
    valid) hdr=(-H "Authorization: Bearer $key"); what="with a valid key" ;;
    none) hdr=(); what="without a key" ;;
    unknown) hdr=(-H "Authorization: Bearer $unknown"); what="with an unknown key" ;;
  esac
  run "read API $what" "$catalog" "$checks" --exclude-path /api/v1/recognize "${hdr[@]}"
  run "read API recognition $what (503 documented: backends unreachable)" "$catalog" \
    "$recognize_checks" --include-path /api/v1/recognize "${hdr[@]}"
done
