# Sourced by scripts/bench.sh (uses its `section` function and its CARGO_TARGET_DIR).
# One photo recognised end to end through rvc-catalog (HTTP in, JSON out) beside the ML service's
# embedding of the same photo, in one run. The bench starts the vector index binary built here.
cargo build -q --release -p rvc-vector-server
section "Recognition: one photo end to end (HTTP in, JSON out) vs one embedding by the ML service" \
  cargo bench -q -p rvc-catalog --bench recognize -- 100 50
