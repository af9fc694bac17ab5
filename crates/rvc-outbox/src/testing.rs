//! Steps that do nothing but wait, and fixtures that seed outbox rows: used by the crash
//! tests (through the `rvc-outbox-noop-worker` binary) and by `make bench`.
use crate::{error::DbContext, Job, OutboxError, Step, StepError};
use rvc_domain::OutboxKind;
use std::time::Duration;
use uuid::Uuid;

/// Completes every row after `sleep`. With `log`, its commit inserts the event id into
/// `outbox_step_log` (which the test creates, with a primary key on event_id), so a row
/// completed twice fails loudly.
#[derive(Debug, Clone)]
pub struct NoopStep {
    pub kind: OutboxKind,
    pub sleep: Duration,
    pub log: bool,
    pub owner: String,
}

impl Step for NoopStep {
    type Output = ();

    fn kind(&self) -> OutboxKind {
        self.kind
    }

    async fn execute(&self, _job: &Job) -> Result<(), StepError> {
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        Ok(())
    }

    async fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        _output: (),
    ) -> Result<(), StepError> {
        if self.log {
            tx.execute(
                "INSERT INTO outbox_step_log (event_id, owner) VALUES ($1, $2)",
                &[&job.event_id, &self.owner],
            )
            .await?;
        }
        Ok(())
    }
}

/// Does nothing and writes nothing at commit (no savepoint per row): what the outbox itself
/// costs per row, the baseline of the outbox and relay benches.
#[derive(Debug, Clone, Copy)]
pub struct NullStep(pub OutboxKind);

impl Step for NullStep {
    type Output = ();
    const COMMIT_WRITES: bool = false;

    fn kind(&self) -> OutboxKind {
        self.0
    }

    async fn execute(&self, _job: &Job) -> Result<(), StepError> {
        Ok(())
    }

    async fn commit(
        &self,
        _tx: &tokio_postgres::Transaction<'_>,
        _job: &Job,
        _output: (),
    ) -> Result<(), StepError> {
        Ok(())
    }
}

/// DDL of the log table [`NoopStep`] writes to.
pub const STEP_LOG_DDL: &str = "CREATE TABLE IF NOT EXISTS outbox_step_log (
    event_id UUID PRIMARY KEY, owner TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// A UUIDv7 made in SQL (Postgres 15 has no `uuidv7()`): the millisecond clock in the first 48
/// bits, version 7, random bits after. Seeded ids are time-ordered like the ones the services
/// make (`Uuid::now_v7()` for products and outbox rows), so a bench over a seeded table touches
/// the index pages that production would: new rows at the right edge of the primary key, not
/// at random leaves of a ten-million-entry index.
const UUID_V7_SQL: &str = "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) \
    placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) \
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid";

/// Inserts `n` products (one category) and one outbox row of `kind` for each, in one
/// statement each. Returns the product ids.
pub async fn seed_rows(
    client: &impl tokio_postgres::GenericClient,
    n: i64,
    kind: OutboxKind,
) -> Result<Vec<Uuid>, OutboxError> {
    seed_category(client).await?;
    let rows = client
        .query(
            &format!(
                "WITH p AS (
                   INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
                   SELECT {UUID_V7_SQL}, 'seed-' || gen_random_uuid(), 'seeded', c.id, 100, 'EUR', 'x'
                   FROM generate_series(1, $1::bigint) g, (SELECT id FROM categories WHERE name = 'seed') c
                   RETURNING id)
                 INSERT INTO outbox (event_id, product_id, product_version, kind)
                 SELECT {UUID_V7_SQL}, p.id, 1, $2 FROM p
                 RETURNING product_id"
            ),
            &[&n, &kind.as_str()],
        )
        .await
        .ctx("seed rows")?;
    rows.iter()
        .map(|r| r.try_get("product_id"))
        .collect::<Result<_, _>>()
        .ctx("seed rows")
        .map_err(Into::into)
}

/// Adds history a long-running outbox accumulates: `done` rows awaiting pruning and `dead`
/// rows awaiting an operator, `per_product` rows (versions) per product, on products of
/// their own. For benchmarks of how claims behave as the table grows.
pub async fn seed_history(
    client: &impl tokio_postgres::GenericClient,
    done: i64,
    dead: i64,
    per_product: i64,
) -> Result<(), OutboxError> {
    seed_category(client).await?;
    for (n, state) in [(done, "done"), (dead, "dead")] {
        if n == 0 {
            continue;
        }
        let products = (n + per_product - 1) / per_product;
        client
            .execute(
                &format!(
                    "WITH p AS (
                       INSERT INTO products (id, sku, name, category_id, price_minor, currency,
                                             content_hash, version, status)
                       SELECT {UUID_V7_SQL}, 'hist-' || gen_random_uuid(), 'history', c.id, 100,
                              'EUR', 'x', $2::int, 'indexed'
                       FROM generate_series(1, $1::bigint) g,
                            (SELECT id FROM categories WHERE name = 'seed') c
                       RETURNING id)
                     INSERT INTO outbox (event_id, product_id, product_version, kind, state,
                                         attempts, created_at, updated_at, completed_at, last_error)
                     SELECT {UUID_V7_SQL}, p.id, v, 'publish', $3, 1,
                            now() - interval '2 hours', now() - interval '1 hour',
                            CASE WHEN $3 = 'done' THEN now() - interval '1 hour' END,
                            CASE WHEN $3 = 'dead' THEN 'seeded' END
                     FROM p, generate_series(1, $2::int) v"
                ),
                &[
                    &products,
                    &i32::try_from(per_product).unwrap_or(i32::MAX),
                    &state,
                ],
            )
            .await
            .ctx("seed history")?;
    }
    Ok(())
}

/// The category every seeded product is in.
async fn seed_category(client: &impl tokio_postgres::GenericClient) -> Result<(), OutboxError> {
    client
        .execute(
            "INSERT INTO categories (name) VALUES ('seed') ON CONFLICT (name) DO NOTHING",
            &[],
        )
        .await
        .ctx("seed category")?;
    Ok(())
}
