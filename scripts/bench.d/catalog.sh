# Sourced by scripts/bench.sh (uses its `section` function and its CARGO_TARGET_DIR).
# GetProductsInfo of 50 ids: cache hot vs cache off (Postgres only) vs raw fred MGET, 1/8/32 callers.
section "Read side: GetProductsInfo of 50 ids, cache hot vs Postgres only vs raw MGET" \
  cargo bench -q -p rvc-catalog --bench catalog -- 5 1000
