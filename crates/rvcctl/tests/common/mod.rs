//! Fixtures shared by the rvcctl tests: run the real binary, seed products/rows/photos with
//! SQL, dump every table, drive real outbox workers in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use deadpool_postgres::Pool;
use rvc_domain::OutboxKind;
use std::process::{Command, Output};
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the real binary (stdin is not a terminal, USER is "ci-user").
pub fn rvcctl(url: &str, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_rvcctl"))
        .env("DATABASE_URL", url)
        .env("USER", "ci-user")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn product(db: &impl GenericClient, sku: &str, version: i32, status: &str) -> Uuid {
    db.execute(
        "INSERT INTO categories (name) VALUES ('test') ON CONFLICT (name) DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    let id = Uuid::now_v7();
    db.execute(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash,
                               version, status)
         SELECT $1, $2, 'Test product', id, 1299, 'EUR', 'hash', $3, $4 FROM categories
         WHERE name = 'test'",
        &[&id, &sku, &version, &status],
    )
    .await
    .unwrap();
    id
}

/// An outbox row in `state`; dead rows carry attempts = max and an error.
pub async fn row(
    db: &impl GenericClient,
    product_id: Uuid,
    version: i32,
    kind: OutboxKind,
    state: &str,
) -> Uuid {
    let id = Uuid::now_v7();
    let (attempts, err, token, completed): (i32, Option<&str>, Option<Uuid>, bool) = match state {
        "dead" => (10, Some("boom: the ML service said 503"), None, false),
        "leased" => (1, None, Some(Uuid::new_v4()), false),
        "done" => (1, None, None, true),
        _ => (0, None, None, false),
    };
    db.execute(
        "INSERT INTO outbox (event_id, product_id, product_version, kind, state, attempts,
                             last_error, lease_token, lease_owner, lease_expires_at,
                             next_attempt_at, completed_at, traceparent, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 CASE WHEN $8::uuid IS NULL THEN NULL ELSE 'worker-1' END,
                 CASE WHEN $8::uuid IS NULL THEN NULL ELSE now() + interval '30 s' END,
                 CASE WHEN $8::uuid IS NULL THEN now() - interval '1 minute'
                      ELSE now() + interval '30 s' END,
                 CASE WHEN $9 THEN now() ELSE NULL END,
                 '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
                 clock_timestamp(), clock_timestamp())",
        &[
            &id,
            &product_id,
            &version,
            &kind.as_str(),
            &state,
            &attempts,
            &err,
            &token,
            &completed,
        ],
    )
    .await
    .unwrap();
    id
}

/// A photo of `version`: staged bytes when there is no object key.
pub async fn photo(
    db: &impl GenericClient,
    product_id: Uuid,
    version: i32,
    ordinal: i16,
    object_key: Option<&str>,
    point_id: Option<Uuid>,
) {
    let staged: Option<Vec<u8>> = object_key.is_none().then(|| vec![1, 2, 3]);
    db.execute(
        "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width,
                                     height, size_bytes, staged_bytes, object_key, point_id,
                                     model_version)
         VALUES ($1, $2, $3, $4, 'image/jpeg', 640, 480, 1234, $5, $6, $7,
                 CASE WHEN $7::uuid IS NULL THEN NULL ELSE 'effnet-lite0' END)",
        &[
            &product_id,
            &version,
            &ordinal,
            &format!("{:064x}", ordinal),
            &staged,
            &object_key,
            &point_id,
        ],
    )
    .await
    .unwrap();
}

/// Every row of every table the CLI could touch, as text (for before/after comparisons).
pub async fn dump(db: &impl GenericClient) -> String {
    let mut out = String::new();
    for table in [
        "categories",
        "products",
        "product_images",
        "outbox",
        "outbox_audit",
    ] {
        let text: String = db
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') AS dump FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap()
            .get("dump");
        out.push_str(&format!("== {table}\n{text}\n"));
    }
    out
}

pub async fn status_of(db: &impl GenericClient, product_id: Uuid) -> String {
    db.query_one("SELECT status FROM products WHERE id = $1", &[&product_id])
        .await
        .unwrap()
        .get("status")
}

pub async fn state_of(db: &impl GenericClient, event_id: Uuid) -> (String, i32) {
    let r = db
        .query_one(
            "SELECT state, attempts FROM outbox WHERE event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap();
    (r.get("state"), r.get("attempts"))
}

/// Runs real outbox workers (a no-op step per kind) until no kind has claimable work.
pub async fn drain(pool: &Pool) {
    rvc_test_support::outbox::drain_with_noop_steps(pool).await;
}
