//! A fresh database per test, cloned from a template that has the migrations applied.
//!
//! The template is created once per migration set (its name carries a hash of the embedded
//! migrations) under an advisory lock, so parallel test processes agree on it; each test then
//! pays only for `CREATE DATABASE … TEMPLATE …`.
use deadpool_postgres::Pool;
use std::time::Duration;

/// Admin connection: `TEST_DATABASE_URL`, default the local server's `postgres` database.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => format!("{admin}/{db}"),
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {} ({e}); start it (make services) or set TEST_DATABASE_URL",
                admin_url()
            )
        });
    tokio::spawn(conn);
    client
}

fn template_name() -> String {
    // Changes whenever a migration file changes, so a stale template is never used.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut h: u64 = 0xcbf29ce484222325;
    for p in entries {
        for b in p
            .file_name()
            .unwrap()
            .as_encoded_bytes()
            .iter()
            .chain(std::fs::read(&p).unwrap().iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("rvc_tpl_{h:016x}")
}

async fn ensure_template() -> String {
    let name = template_name();
    let admin = admin_client().await;
    admin
        .execute("SELECT pg_advisory_lock(72817)", &[])
        .await
        .unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        rvc_store::migrations::run(&url_for(&building))
            .await
            .expect("migrations apply to a fresh database");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {building} RENAME TO {name}; ALTER DATABASE {name} IS_TEMPLATE true"
            ))
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock(72817)", &[])
        .await
        .unwrap();
    name
}

/// A database of its own for one test, dropped (forcefully) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Self {
        crate::init_tracing();
        let template = ensure_template().await;
        let name = format!("rvc_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client().await;
        // CREATE DATABASE … TEMPLATE fails while another session is connected to the
        // template; retry briefly.
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "template busy; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let url = url_for(&name);
        let pool = rvc_store::pool(&url, 32).unwrap();
        Self { name, url, pool }
    }

    /// A plain client on this database (not pooled).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Creates an API key with `scopes` in this database and returns the full key to send as
    /// `Authorization: Bearer <key>`.
    pub async fn api_key(&self, scopes: &[rvc_auth::Scope]) -> String {
        let c = self.pool.get().await.unwrap();
        rvc_auth::create_key(&**c, "test", scopes, None)
            .await
            .unwrap()
            .key
            .key
    }

    /// An API key with every scope.
    pub async fn admin_key(&self) -> String {
        self.api_key(&rvc_auth::Scope::ALL).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let c = self.pool.get().await.unwrap();
        c.query_one(sql, &[]).await.unwrap().get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        // Drop needs its own runtime: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The `tps = …` figure of pgbench's report (`None` when the output has none).
pub fn pgbench_tps(stdout: &str) -> Option<f64> {
    stdout.lines().find_map(|l| {
        l.strip_prefix("tps = ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    })
}
