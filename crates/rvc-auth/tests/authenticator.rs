//! The key check against a real Postgres (a fresh database per test) and, for shared buckets,
//! the local Redis (127.0.0.1:6379, or TEST_REDIS_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_auth::{AuthArgs, AuthError, Authenticator, RateSpec, Scope};
use rvc_test_support::paths::redis_url;
use rvc_test_support::{wait_until, TestDb};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bearer(key: &str) -> Vec<u8> {
    format!("Bearer {key}").into_bytes()
}

async fn auth(db: &TestDb, args: AuthArgs) -> Authenticator {
    Authenticator::build(args, db.pool.clone()).await.unwrap()
}

#[tokio::test]
async fn scopes_decide_and_admin_grants_all() {
    let db = TestDb::new().await;
    let a = auth(&db, AuthArgs::default()).await;
    let read = db.api_key(&[Scope::CatalogRead]).await;
    let write = db.api_key(&[Scope::CatalogWrite]).await;
    let admin = db.api_key(&[Scope::Admin]).await;

    let p = a
        .check(Some(&bearer(&read)), Scope::CatalogRead)
        .await
        .unwrap();
    assert_eq!(p.key_id, &read[4..16]);
    assert_eq!(
        a.check(Some(&bearer(&read)), Scope::CatalogWrite).await,
        Err(AuthError::Forbidden(Scope::CatalogWrite))
    );
    assert!(a
        .check(Some(&bearer(&write)), Scope::CatalogWrite)
        .await
        .is_ok());
    assert_eq!(
        a.check(Some(&bearer(&write)), Scope::Recognize).await,
        Err(AuthError::Forbidden(Scope::Recognize)),
        "a write key cannot recognise"
    );
    for s in Scope::ALL {
        assert!(a.check(Some(&bearer(&admin)), s).await.is_ok(), "{s}");
    }
}

#[tokio::test]
async fn missing_malformed_unknown_and_wrong_secret_are_401() {
    let db = TestDb::new().await;
    let a = auth(&db, AuthArgs::default()).await;
    let key = db.api_key(&[Scope::CatalogRead]).await;
    let wrong_secret = format!("{}{}", &key[..17], "A".repeat(40));
    let unknown = rvc_auth::key::generate().key;
    assert_eq!(
        a.check(None, Scope::CatalogRead).await,
        Err(AuthError::Missing)
    );
    assert_eq!(
        a.check(Some(format!("Basic {key}").as_bytes()), Scope::CatalogRead)
            .await,
        Err(AuthError::Missing)
    );
    for bad in [
        "Bearer nonsense",
        &format!("Bearer {wrong_secret}"),
        &format!("Bearer {unknown}"),
    ] {
        assert_eq!(
            a.check(Some(bad.as_bytes()), Scope::CatalogRead).await,
            Err(AuthError::Invalid),
            "{bad}"
        );
    }
    assert!(a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
}

#[tokio::test]
async fn revocation_takes_effect_within_the_cache_ttl() {
    let db = TestDb::new().await;
    let a = auth(
        &db,
        AuthArgs {
            auth_cache_ttl_secs: 1,
            ..AuthArgs::default()
        },
    )
    .await;
    let key = db.api_key(&[Scope::CatalogRead]).await;
    assert!(a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    let c = db.client().await;
    let revoked_at = Instant::now();
    let row = rvc_store::api_keys::revoke(&c, &key[4..16])
        .await
        .unwrap()
        .unwrap();
    assert!(row.revoked_at.is_some());
    let refused =
        wait_until(Duration::from_secs(3), || {
            let a = a.clone();
            let key = key.clone();
            async move {
                a.check(Some(&bearer(&key)), Scope::CatalogRead).await == Err(AuthError::Revoked)
            }
        })
        .await;
    assert!(refused, "revoked key still accepted after 3 s");
    assert!(
        revoked_at.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        revoked_at.elapsed()
    );
}

#[tokio::test]
async fn expired_key_is_401_and_use_is_recorded() {
    let db = TestDb::new().await;
    let a = auth(&db, AuthArgs::default()).await;
    let c = db.client().await;
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let expired = rvc_auth::create_key(&c, "old", &[Scope::CatalogRead], Some(past))
        .await
        .unwrap();
    assert_eq!(
        a.check(Some(&bearer(&expired.key.key)), Scope::CatalogRead)
            .await,
        Err(AuthError::Expired)
    );
    let key = db.api_key(&[Scope::CatalogRead]).await;
    assert!(a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    let id = key[4..16].to_owned();
    let recorded = wait_until(Duration::from_secs(5), || {
        let db = &db;
        let id = id.clone();
        async move {
            db.count(&format!(
                "SELECT count(*) FROM api_keys WHERE id = '{id}' AND last_used_at IS NOT NULL"
            ))
            .await
                == 1
        }
    })
    .await;
    assert!(recorded, "last_used_at not written");
    // A second use within the minute writes nothing.
    let before: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT last_used_at FROM api_keys WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert!(a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    assert!(!rvc_store::api_keys::touch(&c, &id, 60.0).await.unwrap());
    let after: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT last_used_at FROM api_keys WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
}

fn tight() -> RateSpec {
    RateSpec {
        per_sec: 5.0,
        burst: 3.0,
    }
}

#[tokio::test]
async fn rate_limit_answers_with_a_wait_and_recovers() {
    let db = TestDb::new().await;
    let a = auth(
        &db,
        AuthArgs {
            rate_limit_catalog_read: tight(),
            ..AuthArgs::default()
        },
    )
    .await;
    let key = db.api_key(&[Scope::CatalogRead, Scope::CatalogWrite]).await;
    for _ in 0..3 {
        assert!(a
            .check(Some(&bearer(&key)), Scope::CatalogRead)
            .await
            .is_ok());
    }
    let Err(AuthError::RateLimited(wait)) = a.check(Some(&bearer(&key)), Scope::CatalogRead).await
    else {
        panic!("fourth request in a burst of 3 was not limited")
    };
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    // other scopes have their own bucket
    assert!(a
        .check(Some(&bearer(&key)), Scope::CatalogWrite)
        .await
        .is_ok());
    tokio::time::sleep(wait).await; // the wait the limiter itself announced
    assert!(
        a.check(Some(&bearer(&key)), Scope::CatalogRead)
            .await
            .is_ok(),
        "no recovery"
    );
}

#[tokio::test]
async fn redis_buckets_are_shared_by_replicas() {
    let db = TestDb::new().await;
    let args = AuthArgs {
        rate_limit_catalog_read: tight(),
        rate_limit_redis_url: Some(redis_url()),
        ..AuthArgs::default()
    };
    let replica_a = auth(&db, args.clone()).await;
    let replica_b = auth(&db, args).await;
    let key = db.api_key(&[Scope::CatalogRead]).await;
    assert!(replica_a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    assert!(replica_b
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    assert!(replica_a
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
    let Err(AuthError::RateLimited(wait)) = replica_b
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
    else {
        panic!("the shared bucket of 3 did not limit the fourth request on another replica")
    };
    tokio::time::sleep(wait).await;
    assert!(replica_b
        .check(Some(&bearer(&key)), Scope::CatalogRead)
        .await
        .is_ok());
}

#[tokio::test]
async fn unreachable_redis_url_fails_the_start() {
    let db = TestDb::new().await;
    let port = rvc_test_support::net::free_port();
    let args = AuthArgs {
        rate_limit_redis_url: Some(format!("redis://127.0.0.1:{port}")),
        ..AuthArgs::default()
    };
    assert!(Authenticator::build(args, db.pool.clone()).await.is_err());
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn keys_never_appear_in_logs_even_at_trace() {
    let db = TestDb::new().await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let a = auth(
        &db,
        AuthArgs {
            rate_limit_catalog_read: RateSpec {
                per_sec: 1.0,
                burst: 1.0,
            },
            ..AuthArgs::default()
        },
    )
    .await;
    let key = db.api_key(&[Scope::CatalogRead]).await;
    let wrong = format!("{}{}", &key[..17], "B".repeat(40));
    let c = db.client().await;
    let revoked = rvc_auth::create_key(&c, "gone", &[Scope::CatalogRead], None)
        .await
        .unwrap();
    rvc_store::api_keys::revoke(&c, &revoked.key.id)
        .await
        .unwrap();
    let _ = a.check(Some(&bearer(&key)), Scope::CatalogRead).await;
    let _ = a.check(Some(&bearer(&key)), Scope::CatalogRead).await; // rate limited
    let _ = a.check(Some(&bearer(&key)), Scope::CatalogWrite).await; // forbidden
    let _ = a.check(Some(&bearer(&wrong)), Scope::CatalogRead).await;
    let _ = a
        .check(Some(&bearer(&revoked.key.key)), Scope::CatalogRead)
        .await;
    let _ = a
        .check(Some(b"Bearer rvc_short_secretpart"), Scope::CatalogRead)
        .await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&key[4..16]),
        "the public id is logged, so the capture works:\n{logs}"
    );
    for secret in [
        &key[17..],
        &wrong[17..],
        &revoked.key.key[17..],
        "secretpart",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs:\n{logs}"
        );
    }
}
