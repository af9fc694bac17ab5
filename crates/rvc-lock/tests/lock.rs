//! Against the real Redis (REDIS_URL, default redis://127.0.0.1:6379).
use rvc_lock::RedisLock;
use std::time::Duration;

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::test]
async fn one_holder_at_a_time_and_only_the_holder_releases() {
    let a = RedisLock::connect(&url()).await.unwrap();
    let b = RedisLock::connect(&url()).await.unwrap();
    let key = format!("rvc-test-lock-{}", uuid_like());
    let ga = a
        .try_acquire(&key, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(b
        .try_acquire(&key, Duration::from_secs(30))
        .await
        .unwrap()
        .is_none());
    // A stale guard (wrong token) cannot release it.
    let forged = rvc_lock::LockGuard {
        key: key.clone(),
        token: "not-ours".into(),
    };
    assert!(!b.release(&forged).await.unwrap());
    assert!(a.release(&ga).await.unwrap());
    let gb = b.try_acquire(&key, Duration::from_secs(30)).await.unwrap();
    assert!(gb.is_some(), "free again after release");
    b.release(&gb.unwrap()).await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_frees_the_lock_and_its_old_guard_is_powerless() {
    let a = RedisLock::connect(&url()).await.unwrap();
    let key = format!("rvc-test-lock-{}", uuid_like());
    let old = a
        .try_acquire(&key, Duration::from_millis(150))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = a
        .try_acquire(&key, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !a.release(&old).await.unwrap(),
        "the crashed holder's guard must not free the new lease"
    );
    assert!(a.release(&new).await.unwrap());
}

#[tokio::test]
async fn a_bad_url_is_a_config_error() {
    assert!(matches!(
        RedisLock::connect("not-a-url").await,
        Err(rvc_lock::LockError::Config(_))
    ));
}

fn uuid_like() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}
