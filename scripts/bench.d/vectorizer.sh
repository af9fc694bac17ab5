# Sourced by scripts/bench.sh (uses its `section` and `$repo`): the ML service's images/s on
# its own beside the vectorizer's photos/s through the whole pipeline, in the same run, and
# the ML latency per image. The vector index is the `rvc-vector-index` debug binary that
# `make run` starts (built in the shared target dir; a release build of qdrant-edge just for
# the benchmark would cost another ~10 minutes of compilation).
VECTOR_INDEX_BIN="${VECTOR_INDEX_BIN:-$repo/target/debug/rvc-vector-index}"
if [ "$VECTOR_INDEX_BIN" = "$repo/target/debug/rvc-vector-index" ]; then
  CARGO_TARGET_DIR="$repo/target" cargo build -q -p rvc-vector-server
fi
export VECTOR_INDEX_BIN
# 100 products x 2 photos, 4 ML calls in flight (ML_CONCURRENCY) in both measurements.
section "Vectorizer: photos/s through the pipeline vs the ML service alone" \
  cargo bench -q -p rvc-vectorizer --bench vectorizer -- 100 2 4
