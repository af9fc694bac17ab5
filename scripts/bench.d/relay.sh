# Sourced by scripts/bench.sh (uses its `section` function and its CARGO_TARGET_DIR).
# Relay events/s beside the raw rskafka produce rate of the same records, same broker, same run.
section "Relay: events/s (claim + load + one produce per batch + commit) vs raw rskafka produce" \
  cargo bench -q -p rvc-relay --bench relay -- 5000 64
# registered -> indexed latency for a burst of products through every real binary (release
# builds of the binaries in the bench target dir; the ML step's share is shown).
if cargo build -q --release --workspace --bins 2>/dev/null; then
  section "Pipeline: registered → indexed p50/p99 for a burst of 500 products (ML share shown)" \
    cargo bench -q -p rvc-e2e --bench pipeline -- 500
fi
