// graphile-worker draining no-op jobs: the peer the rvc outbox is compared with in
// `make bench` (crates/rvc-outbox/benches/outbox.rs runs this once per concurrency).
// Usage: node bench.cjs DATABASE_URL JOBS CONCURRENCY  -> prints jobs/s on one line.
// Jobs are queued in one statement before the clock starts; the clock stops when
// graphile_worker.jobs is empty (every job completed and deleted).
"use strict";
const { run, makeWorkerUtils } = require("graphile-worker");
const { Pool } = require("pg");

async function main() {
  const [url, jobsArg, concurrencyArg] = process.argv.slice(2);
  const jobs = Number(jobsArg);
  const concurrency = Number(concurrencyArg);
  if (!url || !(jobs > 0) || !(concurrency > 0)) {
    throw new Error("usage: node bench.cjs DATABASE_URL JOBS CONCURRENCY");
  }
  const pgPool = new Pool({ connectionString: url, max: concurrency + 2 });
  pgPool.on("error", (e) => console.error("pg pool:", e.message));
  const utils = await makeWorkerUtils({ pgPool });
  await utils.migrate();
  await pgPool.query(
    "SELECT graphile_worker.add_job('noop', '{}'::json) FROM generate_series(1, $1::int)",
    [jobs],
  );
  const start = process.hrtime.bigint();
  const runner = await run({
    pgPool,
    concurrency,
    pollInterval: 20,
    noHandleSignals: true,
    taskList: { noop: async () => {} },
    logger: new (require("graphile-worker").Logger)(() => () => {}),
  });
  for (;;) {
    const { rows } = await pgPool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs");
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await runner.stop();
  await utils.release();
  await pgPool.end();
  console.log((jobs / seconds).toFixed(0));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
