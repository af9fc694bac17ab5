#!/usr/bin/env bash
# Starts the whole system on loopback: the Kafka-protocol broker (tansu), the S3-protocol server
# (s3s-fs), the vector index (rvc-vector-index over qdrant-edge), the ML service, the API and the
# three workers. Data lives under var/, logs under var/log/. A process that exits is restarted
# with a backoff and the console says so (scripts/lib/supervise.sh); Ctrl-C (or SIGTERM) stops
# every process gracefully, and so does a process that keeps crashing (RESTART_MAX quick exits
# in a row). Variables in .env (see .env.example) override the defaults below.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
[ -f .env ] && set -a && . ./.env && set +a

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rvc}"
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
export RUST_LOG="${RUST_LOG:-info}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export KAFKA_TOPIC="${KAFKA_TOPIC:-catalog.product-events}"
export S3_ENDPOINT="${S3_ENDPOINT-http://127.0.0.1:9000}"
export S3_BUCKET="${S3_BUCKET:-rvc-images}"
export S3_REGION="${S3_REGION:-us-east-1}"
export S3_ACCESS_KEY_ID="${S3_ACCESS_KEY_ID:-rvc-local}"
export S3_SECRET_ACCESS_KEY="${S3_SECRET_ACCESS_KEY:-rvc-local-secret}"
export ML_ADDR="${ML_ADDR:-127.0.0.1:50051}"
export ML_SERVICE_URL="${ML_SERVICE_URL:-http://$ML_ADDR}"
export ML_MODEL_PATH="${ML_MODEL_PATH:-$repo/var/models/efficientnet-lite0.onnx}"
export QDRANT_URL="${QDRANT_URL:-http://127.0.0.1:6334}"
export QDRANT_COLLECTION="${QDRANT_COLLECTION:-product_images}"
export VECTOR_ADDR="${VECTOR_ADDR:-${QDRANT_URL#http://}}"
export VECTOR_DATA_DIR="${VECTOR_DATA_DIR:-$repo/var/vector-index}"
bin="$repo/target/debug"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p var/log var/s3
. "$repo/scripts/lib/supervise.sh"

pids=()   # supervisors, one per process
names=()
stop() {
  trap - INT TERM
  echo; echo "stopping..."
  # workers and API first, then the services they use; each supervisor TERMs its process
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait || true
  echo "stopped"
  exit "${1:-0}"
}
trap stop INT TERM

start() { # name, then the command; restarted with a backoff when it exits
  local name="$1"; shift
  : >"var/log/$name.log"
  supervise "$name" "$@" &
  pids+=($!); names+=("$name")
}

wait_port() { # host:port name
  for _ in $(seq 1 100); do
    if (echo >"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start listening on $1; see var/log/$2.log" >&2
  stop
}

# --- the database ---
db_name="${DATABASE_URL##*/}"; db_name="${db_name%%\?*}"
admin_url="${DATABASE_URL%/*}/postgres"
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE \"$db_name\""
fi
"$bin/rvcctl" migrate

# --- development API key (issue #15): every scope, kept in var/dev-api-key (mode 600) and
# reused while it is still valid; the secret exists only there, Postgres keeps its hash ---
dev_key_file="$repo/var/dev-api-key"
mkdir -p "$repo/var"
if ! { [ -s "$dev_key_file" ] && "$bin/rvcctl" apikey verify <"$dev_key_file" >/dev/null 2>&1; }; then
  ( umask 077
    "$bin/rvcctl" apikey create --name dev-local --scope catalog:write --scope catalog:read \
      --scope recognize --scope admin --output json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >"$dev_key_file.tmp" )
  mv "$dev_key_file.tmp" "$dev_key_file"
fi
chmod 600 "$dev_key_file"
RVC_DEV_API_KEY="$(cat "$dev_key_file")"

# --- local stand-ins for Kafka, S3 and Qdrant (see docs/decisions.md) ---
start tansu "${TANSU_BIN:-$cargo_bin/tansu}" broker \
  --listener-url "tcp://$KAFKA_BROKERS" --advertised-listener-url "tcp://$KAFKA_BROKERS" \
  --storage-engine memory://tansu/
wait_port "$KAFKA_BROKERS" tansu
if [ -n "$S3_ENDPOINT" ]; then
  s3_hostport="${S3_ENDPOINT#http://}"
  start s3s-fs "${S3S_FS_BIN:-$cargo_bin/s3s-fs}" --host "${s3_hostport%:*}" --port "${s3_hostport##*:}" \
    --access-key "$S3_ACCESS_KEY_ID" --secret-key "$S3_SECRET_ACCESS_KEY" "$repo/var/s3"
  wait_port "$s3_hostport" s3s-fs
fi
start rvc-vector-index env METRICS_ADDR="${VECTOR_METRICS_ADDR:-127.0.0.1:9105}" "$bin/rvc-vector-index"
wait_port "$VECTOR_ADDR" rvc-vector-index
start rvc-ml-service env METRICS_ADDR="${ML_METRICS_ADDR:-127.0.0.1:9104}" "$bin/rvc-ml-service"
wait_port "$ML_ADDR" rvc-ml-service

# --- the system ---
start rvc-ingest-api "$bin/rvc-ingest-api"
for w in rvc-image-uploader rvc-vectorizer rvc-relay rvc-maintenance; do
  [ -x "$bin/$w" ] && start "$w" "$bin/$w"
done
wait_port "$HTTP_ADDR" rvc-ingest-api
# the read side: gRPC ProductService and RecognitionService on GRPC_ADDR, HTTP reads and
# POST /api/v1/recognize on CATALOG_HTTP_ADDR; API keys enforced as on the ingest API (the dev
# key above holds every scope); recognition uses ML_SERVICE_URL and QDRANT_URL from above
export REDIS_URL="${REDIS_URL-redis://127.0.0.1:6379}" GRPC_ADDR="${GRPC_ADDR:-127.0.0.1:8091}"
export CATALOG_HTTP_ADDR="${CATALOG_HTTP_ADDR:-127.0.0.1:8081}"
[ -x "$bin/rvc-catalog" ] && start rvc-catalog "$bin/rvc-catalog" && wait_port "$GRPC_ADDR" rvc-catalog

# --- Prometheus on loopback, scraping every binary (deploy/prometheus/; scripts/setup-prometheus.sh) ---
prom_addr="${PROMETHEUS_ADDR:-127.0.0.1:9090}"
mkdir -p var/prometheus
start prometheus /usr/bin/prometheus --config.file=deploy/prometheus/prometheus.yml \
  --storage.tsdb.path=var/prometheus --storage.tsdb.retention.time=2d --web.listen-address="$prom_addr"
wait_port "$prom_addr" prometheus
echo "Prometheus: http://$prom_addr/targets (alerts: /alerts)"

cat <<MSG

API:        http://$HTTP_ADDR/api/v1/products
API key:    $RVC_DEV_API_KEY  (every scope; in var/dev-api-key)
            curl -H "Authorization: Bearer \$(cat var/dev-api-key)" "http://$HTTP_ADDR/api/v1/products?sku=OAT-1L"
Swagger UI: http://$HTTP_ADDR/swagger/index.html
Read API:   grpc $GRPC_ADDR (rvc.catalog.v1.ProductService, RecognitionService), http://$CATALOG_HTTP_ADDR/swagger/index.html
            curl -H "Authorization: Bearer \$(cat var/dev-api-key)" "http://$CATALOG_HTTP_ADDR/api/v1/products?limit=5"
Recognize:  curl -H "Authorization: Bearer \$(cat var/dev-api-key)" -F image=@photo.jpg "http://$CATALOG_HTTP_ADDR/api/v1/recognize"
POS client: .venv/bin/python scripts/pos-client.py --addr $GRPC_ADDR <product id>...   (key: RVC_API_KEY or var/dev-api-key)
Console:    http://$CATALOG_HTTP_ADDR/console/  (asks once for the key above)
Events:     .venv/bin/python scripts/read-events.py --brokers $KAFKA_BROKERS --topic $KAFKA_TOPIC
Outbox:     target/debug/rvcctl outbox stats
A process that exits is restarted (the console says so). Ctrl-C stops everything.
MSG
# Supervisors only return when their process keeps crashing: then stop everything.
set +e
wait -n "${pids[@]}"
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || echo "${names[$i]} keeps crashing; stopping the system (see var/log/${names[$i]}.log)" >&2
done
stop 1
